"""The required storage core: the durable queue and its records, and the values it trades in.

Everything else a backend may offer (shared state, rate limits, OTPs, provider events,
housekeeping, webhooks, wake-ups) is a capability: see :mod:`otpagent.protocols.capabilities`.
Time is always passed in (``now``: POSIX seconds), so backends never read the clock themselves,
which keeps them testable and consistent across a fleet.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from otpagent.model import Attempt, Event, Message, Status
from otpagent.protocols.routing import ChannelStats

__all__ = [
    "FINISHED_STATUSES",
    "IDEMPOTENCY_WINDOW_SECONDS",
    "STATS_WINDOW_SECONDS",
    "Capability",
    "EnqueueResult",
    "IdempotencyConflict",
    "MessageUpdate",
    "MessageWrite",
    "NewMessage",
    "StorageBackend",
    "StorageStats",
]

#: Per-channel statistics cover the attempts that finished in this many seconds before ``now``.
STATS_WINDOW_SECONDS = 24 * 3600.0
#: An idempotency key holds for this long after its message was created (Stripe's rule).
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600.0
#: Messages the queue is done with: ``cleanup`` may delete them once old enough.
FINISHED_STATUSES = frozenset({Status.SENT, Status.DELIVERED, Status.READ, Status.UNDELIVERED, Status.FAILED,
                               Status.CANCELLED, Status.EXPIRED})


class Capability(enum.Enum):
    """What a storage backend may provide beyond the required core (see ``capabilities``).

    Each member stands for one protocol of :mod:`otpagent.protocols.capabilities`.
    """

    SHARED_STATE = "shared_state"
    RATE_LIMITS = "rate_limits"
    OTP_STORE = "otp_store"
    PROVIDER_EVENTS = "provider_events"
    HOUSEKEEPING = "housekeeping"
    WEBHOOK_OUTBOXES = "webhook_outboxes"
    WORK_WAKEUP = "work_wakeup"
    BATCH_UPDATES = "batch_updates"
    STREAMED_ENQUEUE = "streamed_enqueue"


class IdempotencyConflict(Exception):
    """An idempotency key was reused with a different request body."""

    def __init__(self, key: str, index: int | None = None) -> None:
        self.key = key
        self.index = index
        super().__init__(f"idempotency key {key!r} was already used with a different request")


@attrs.frozen(kw_only=True)
class NewMessage:
    """A message to enqueue, with the fingerprint of its request for idempotency checks."""

    message: Message
    fingerprint: str | None = None


@attrs.frozen(kw_only=True)
class EnqueueResult:
    message_id: str
    created: bool


@attrs.frozen(kw_only=True)
class MessageUpdate:
    """A conditional change of one message, applied atomically.

    It applies only when the message is in ``expected_statuses`` (if given), when
    ``expected_owner`` is given still leased by that worker, and when
    ``expected_provider_message_id`` is given still known to the provider by that id (its
    current attempt). Fields left ``None`` keep their value. Leases are released unless
    ``keep_lease``.
    """

    message_id: str
    status: Status
    expected_statuses: frozenset[Status] | None = None
    expected_owner: str | None = None
    expected_provider_message_id: str | None = None
    due_at: float | None = None
    route: tuple[str, ...] | None = None
    route_index: int | None = None
    channel_attempts: int | None = None
    attempt_count: int | None = None
    channel: str | None = None
    provider_message_id: str | None = None
    last_error: str | None = None
    add_cost: float = 0.0
    clear_secret: bool = False
    keep_lease: bool = False


@attrs.frozen(kw_only=True)
class MessageWrite:
    """One outcome to record: the arguments of one ``update_message`` call, for
    :class:`~otpagent.protocols.BatchUpdates` (``update_messages``)."""

    update: MessageUpdate
    now: float
    attempt: Attempt | None = None
    events: Sequence[Event] = ()


@attrs.frozen(kw_only=True)
class StorageStats:
    """Counts for metrics, computed by the backend."""

    total: int
    queue_size: int
    by_status: Mapping[str, int]
    channels: Mapping[str, ChannelStats]
    oldest_due_age_seconds: float | None = None


@runtime_checkable
class StorageBackend(Protocol):
    """The durable queue and its records: what every backend must provide.

    Every method is atomic and safe across threads (and, for a backend shared by a fleet,
    across processes). ``capabilities`` declares which optional protocols of
    :mod:`otpagent.protocols.capabilities` the backend also implements; the agent checks, when
    it is built, that each one its configuration needs is both declared and present. The
    contract suite :class:`otpagent.testing.StorageContract` holds every backend to the same
    rules (see docs/storage.md).
    """

    name: str
    capabilities: frozenset[Capability]

    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        """Insert all messages in one transaction, with their ``queued`` events.

        A message whose idempotency key is already used (within
        :data:`IDEMPOTENCY_WINDOW_SECONDS`) with the same fingerprint is not inserted: its
        existing id comes back with ``created=False``. The same key with a different fingerprint
        raises :class:`IdempotencyConflict` and nothing is written.
        """

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float, *,
                  reclaim: bool = True) -> list[Message]:
        """Lease up to ``limit`` due messages to ``worker_id``, highest priority first, then
        earliest due, then oldest. A message is due when claimable and ``due_at <= now``, or
        (unless ``reclaim`` is false) when it is ``sending`` under an expired lease (its worker
        died). Each message goes to exactly one caller; claimed messages are ``sending``.
        """

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        """Extend the lease of every ``sending`` message leased by ``worker_id`` to
        ``now + lease_seconds`` (a live worker's heartbeat); returns how many.
        """

    def update_message(
        self, update: MessageUpdate, now: float, *, attempt: Attempt | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        """Apply ``update`` if its conditions hold; insert ``attempt`` (always, even when the
        conditions fail: it happened) and ``events`` (only with the update) in the same
        transaction. Returns whether the update applied.
        """

    def get_message(self, message_id: str) -> Message | None:
        """The message, or None."""

    def get_attempts(self, message_id: str) -> list[Attempt]:
        """Every attempt of the message, in order."""

    def get_events(self, message_id: str) -> list[Event]:
        """Every recorded event of the message, in order."""

    def recent_messages(self, limit: int) -> list[Message]:
        """The most recently updated messages."""

    def find_by_provider_id(self, provider_message_id: str) -> Attempt | None:
        """The latest attempt the provider knows by this id."""

    def ping(self) -> None:
        """Raise when the store is unreachable."""

    def close(self) -> None:
        """Release connections."""
