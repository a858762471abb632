"""Event sinks, and the durable webhook outbox a storage backend offers the ``webhook`` sink.

The outbox contract (with :func:`event_payload`, the body a delivery carries) lives here rather
than beside the sink, so that storage backends implement it without importing the sink (the
sink depends on storage, never the reverse).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from otpagent.model import Event

__all__ = ["Delivery", "DeliveryStatus", "EventSink", "WebhookOutbox", "event_payload", "event_type_name",
           "sink_event_types", "sink_start"]


@runtime_checkable
class EventSink(Protocol):
    """Where events go. ``emit`` is called from a background thread and must not block long.

    Optional member (read once, when the bus is built, by :func:`sink_start`):

    ``start() -> None`` (default: nothing to start)
        Called when the agent starts processing or the service starts, so a durable sink can
        resume work left from before a restart (the webhook sink starts its pump). It may be
        called more than once and must be idempotent.

    ``event_types: Collection[str] | None`` (default None: every event)
        The event types the sink takes; it is handed only those. When no sink takes a type,
        events of that type are not even built: each event costs the hot path a queue hand-off
        and the bus thread a wake-up (the service's latency tap takes only ``attempt``).
    """

    def emit(self, event: Event) -> None:
        """Deliver one event (``queued``, ``attempt``, ``sent``, ``delivered``, ``failed``...)."""

    def close(self) -> None:
        """Flush and release resources."""


def sink_event_types(sink: EventSink) -> frozenset[str] | None:
    """The sink's optional ``event_types`` member as a set, or None (every event: the default).

    Raises ``TypeError`` naming the sink when the member is not a collection of strings.
    """
    types = getattr(sink, "event_types", None)
    if types is None:
        return None
    if isinstance(types, str | bytes) or not isinstance(types, Collection) or \
            not all(isinstance(t, str) for t in types):
        raise TypeError(f"event sink {type(sink).__name__}: event_types must be a collection of event type "
                        f"names or None, got {types!r}")
    return frozenset(types)


def sink_start(sink: EventSink) -> Callable[[], None] | None:
    """The sink's optional ``start`` member, or None when it has none (the default)."""
    start = getattr(sink, "start", None)
    return start if callable(start) else None


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


@runtime_checkable
class WebhookOutbox(Protocol):
    """Durable, multi-process-safe delivery bookkeeping for the ``webhook`` sink.

    Events are already stored (``events``) in the same transaction as the state change they
    describe. The outbox turns them into one delivery per endpoint (``pull``, atomically with
    the endpoint's cursor), hands due deliveries to one sender at a time under a lease
    (``claim``), and records what happened. The database is the source of truth, so nothing is
    lost while the receiver or the agent is down. A delivery's ``payload`` is
    :func:`event_payload` of its event.
    """

    def ensure_endpoint(self, endpoint: str, now: float) -> None:
        """Create the endpoint's cursor at the newest event (a new endpoint starts from now)."""

    def pull(self, endpoint: str, event_types: Collection[str] | None, now: float, limit: int = 500) -> int:
        """Turn events after the cursor into pending deliveries (only ``event_types``, if given)
        and advance the cursor, in one transaction; returns how many deliveries were created.
        An event is pulled once per endpoint, however many pumps pull at once.
        """

    def add(self, endpoint: str, event_type: str, payload: Mapping[str, Any], now: float) -> int:
        """Queue a delivery for an event that is not in the events table; returns its id.
        Its ``webhook_id`` is ``whd_<id>``; a pulled event's is ``evt_<event id>``.
        """

    def claim(self, endpoint: str, owner: str, lease_seconds: float, now: float, limit: int = 20) -> list[Delivery]:
        """Lease up to ``limit`` due pending deliveries (oldest first) to ``owner``; a delivery
        under another owner's unexpired lease is not handed out.
        """

    def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Give back leased deliveries that were not attempted (on shutdown)."""

    def mark_delivered(self, delivery_id: int, owner: str, now: float) -> bool:
        """Record success (only while ``owner`` holds the lease)."""

    def schedule_retry(self, delivery_id: int, owner: str, error: str, next_attempt_at: float, now: float) -> bool:
        """Record a failed attempt and when to try again (only while ``owner`` holds the lease)."""

    def mark_dead(self, delivery_id: int, owner: str, error: str, now: float) -> bool:
        """Record a final failed attempt: the delivery is dead-lettered (only for the owner)."""

    def list(self, *, endpoint: str | None = None, status: DeliveryStatus | None = None,
             limit: int = 50) -> list[Delivery]:
        """The most recent deliveries, newest first."""

    def retry_dead(self, now: float, *, endpoint: str | None = None,
                   ids: Sequence[int] | None = None) -> int:
        """Make dead deliveries pending again (a fresh retry cycle); returns how many."""

    def replay(self, endpoint: str, event_types: Collection[str] | None, since: float, now: float) -> int:
        """Queue new deliveries for every stored event at or after ``since``; returns how many."""

    def purge(self, older_than: float) -> int:
        """Delete delivered and dead deliveries last updated before ``older_than``."""


def event_type_name(event_type: str) -> str:
    """The Standard Webhooks ``type`` of a core event: ``message.delivered``, ``otp.verified``,
    ``fraud.prefix_held``..."""
    for family in ("otp", "fraud"):
        if event_type.startswith(f"{family}_"):
            return f"{family}." + event_type.removeprefix(f"{family}_")
    return "message." + event_type


def event_payload(event_type: str, message_id: str | None, at: float, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body sent for one event (``{"type", "timestamp", "data"}``, as the spec suggests)."""
    body: dict[str, Any] = {"event": event_type, **dict(data)}
    if message_id is not None:
        body["message_id"] = message_id
    return {"type": event_type_name(event_type), "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
            "data": body}
