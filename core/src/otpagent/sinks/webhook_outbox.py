"""The durable webhook outbox: the contract a storage backend implements for the ``webhook`` sink.

Events are already written to the ``events`` table in the same transaction as the state change
they describe. The outbox turns them into one delivery per endpoint (``pull``, atomically with
the endpoint's cursor), hands due deliveries to one sender at a time under a lease (``claim``),
and records what happened (``mark_delivered``, ``schedule_retry``, ``mark_dead``). Because the
database is the source of truth, nothing is lost while the receiver or the agent is down.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import attrs

from otpagent.errors import ConfigError
from otpagent.protocols import StorageBackend

__all__ = ["Delivery", "DeliveryStatus", "WebhookOutbox", "backoff_delay", "event_payload", "event_type_name",
           "outbox_for"]


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@attrs.frozen(kw_only=True)
class Delivery:
    """One event to deliver to one endpoint. ``webhook_id`` stays the same across retries."""

    id: int
    endpoint: str
    webhook_id: str
    event_type: str
    payload: Mapping[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    created_at: float
    cycle_started_at: float
    last_error: str | None = None
    delivered_at: float | None = None


class WebhookOutbox(Protocol):
    """Durable, multi-process-safe delivery bookkeeping (see ``storage/sqlite_outbox.py``)."""

    def ensure_endpoint(self, endpoint: str, now: float) -> None:
        """Create the endpoint's cursor at the newest event (a new endpoint starts from now)."""

    def pull(self, endpoint: str, event_types: Collection[str] | None, now: float, limit: int = 500) -> int:
        """Turn events after the cursor into pending deliveries (only ``event_types``, if given)
        and advance the cursor, in one transaction; returns how many deliveries were created.
        """

    def add(self, endpoint: str, event_type: str, payload: Mapping[str, Any], now: float) -> int:
        """Queue a delivery for an event that is not in the events table; returns its id."""

    def claim(self, endpoint: str, owner: str, lease_seconds: float, now: float, limit: int = 20) -> list[Delivery]:
        """Lease up to ``limit`` due pending deliveries (oldest first) to ``owner``."""

    def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Give back leased deliveries that were not attempted (on shutdown)."""

    def mark_delivered(self, delivery_id: int, owner: str, now: float) -> bool:
        """Record success (only while ``owner`` holds the lease)."""

    def schedule_retry(self, delivery_id: int, owner: str, error: str, next_attempt_at: float, now: float) -> bool:
        """Record a failed attempt and when to try again."""

    def mark_dead(self, delivery_id: int, owner: str, error: str, now: float) -> bool:
        """Record a final failed attempt: the delivery is dead-lettered."""

    def list(self, *, endpoint: str | None = None, status: DeliveryStatus | None = None,
             limit: int = 50) -> list[Delivery]:
        """The most recent deliveries, newest first."""

    def retry_dead(self, now: float, *, endpoint: str | None = None,
                   ids: Sequence[int] | None = None) -> int:
        """Make dead deliveries pending again (a fresh retry cycle); returns how many."""

    def replay(self, endpoint: str, event_types: Collection[str] | None, since: float, now: float) -> int:
        """Queue new deliveries for every stored event at or after ``since``; returns how many."""

    def purge(self, older_than: float) -> int:
        """Delete delivered and dead deliveries older than ``older_than``."""


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base*2^(n-1) capped, scaled by a factor in [0.5, 1.0]."""
    raw = min(cap, base * float(2 ** min(attempts - 1, 40)))
    return raw * (0.5 + rng.random() / 2)


def outbox_for(storage: StorageBackend, config_path: str) -> WebhookOutbox:
    """The outbox for this storage backend: built in for SQLite, else ``storage.webhook_outbox()``."""
    if storage.name == "sqlite":
        from otpagent.storage.sqlite import SqliteStorage
        from otpagent.storage.sqlite_outbox import SqliteWebhookOutbox

        if isinstance(storage, SqliteStorage):
            return SqliteWebhookOutbox(storage)
    factory = getattr(storage, "webhook_outbox", None)
    if callable(factory):
        outbox: WebhookOutbox = factory()
        return outbox
    raise ConfigError(config_path, f"webhooks are not supported by the storage backend {storage.name!r} "
                                   "(it provides no webhook_outbox())")


def event_type_name(event_type: str) -> str:
    """The Standard Webhooks ``type`` of a core event: ``message.delivered``, ``otp.verified``..."""
    if event_type.startswith("otp_"):
        return "otp." + event_type.removeprefix("otp_")
    return "message." + event_type


def event_payload(event_type: str, message_id: str | None, at: float, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body sent for one event (``{"type", "timestamp", "data"}``, as the spec suggests)."""
    from datetime import UTC, datetime

    body: dict[str, Any] = {"event": event_type, **dict(data)}
    if message_id is not None:
        body["message_id"] = message_id
    return {"type": event_type_name(event_type), "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
            "data": body}
