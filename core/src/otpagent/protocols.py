"""What a plugin must provide: the four extension-point protocols and their small value types.

The core never checks ``isinstance`` against a concrete class; anything with these methods
works. Time is always passed in (``now``: POSIX seconds) so backends never read the clock
themselves, which keeps them testable and consistent across a fleet.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from otpagent.model import Attempt, Envelope, Event, Message, Priority, SendResult, Status

__all__ = [
    "STATS_WINDOW_SECONDS",
    "Channel",
    "ChannelInfo",
    "ChannelStats",
    "EnqueueResult",
    "EventSink",
    "IdempotencyConflict",
    "MessageUpdate",
    "NewMessage",
    "OtpIssueOutcome",
    "OtpRecord",
    "OtpVerifyOutcome",
    "RouteOutcome",
    "RoutingStrategy",
    "StorageBackend",
    "StorageStats",
]


# --------------------------------------------------------------------------------------------
# Channels


@runtime_checkable
class Channel(Protocol):
    """A way to deliver a message: one provider account on one medium.

    ``send`` must not raise for provider errors: it classifies them into a :class:`SendResult`
    (accepted / transient / permanent, and for permanent whether the message or the whole
    channel is at fault). It must finish within a bounded time (set an HTTP timeout).
    """

    name: str
    kind: str

    def supports(self, envelope: Envelope) -> bool:
        """True when this channel can address the envelope's recipient (phone, email...)."""

    def check(self, envelope: Envelope) -> str | None:
        """Why this channel cannot carry this content (too long...), or None when it can."""

    def estimate_cost(self, envelope: Envelope) -> float:
        """Expected cost of one send of this envelope, in the configured currency."""

    def send(self, envelope: Envelope) -> SendResult:
        """Hand the envelope to the provider and classify the answer."""

    def close(self) -> None:
        """Release connections; called once at shutdown."""


# --------------------------------------------------------------------------------------------
# Routing


@attrs.frozen(kw_only=True)
class ChannelStats:
    """Observed performance of one channel (from storage, shared by every worker)."""

    attempts: int = 0
    accepted: int = 0
    transient: int = 0
    permanent: int = 0
    delivered: int = 0
    undelivered: int = 0
    cost: float = 0.0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        """Accepted share of attempts, or None before the first attempt."""
        return self.accepted / self.attempts if self.attempts else None


@attrs.frozen(kw_only=True)
class ChannelInfo:
    """What a routing strategy knows of a candidate channel for one message."""

    name: str
    kind: str
    cost: float
    stats: ChannelStats
    priority_rank: int = 0
    weight: float = 1.0
    available: bool = True


@attrs.frozen(kw_only=True)
class RouteOutcome:
    """What happened on one channel for one message: fed back to the strategy's ``observe``."""

    message_id: str
    channel: str
    priority: Priority
    status: Status
    country: str | None = None
    latency_ms: float | None = None
    cost: float = 0.0
    #: True when the outcome comes from a provider callback (delivered/undelivered) rather
    #: than from the send itself; a callback failure overturns an earlier accepted send.
    callback: bool = False


class RoutingStrategy(Protocol):
    """Chooses the channels for a message: first choice, then fallbacks in order.

    A strategy may set ``observes_country = False`` when its ``observe`` ignores
    ``RouteOutcome.country``: finding a number's country costs about as much as parsing it,
    once per send, so the dispatcher then leaves it None. Without the attribute it is filled.
    """

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        """Order (a subset of) ``candidates`` by name; every candidate can reach the recipient."""

    def observe(self, outcome: RouteOutcome) -> None:
        """Learn from an outcome (attempt results and provider callbacks)."""


# --------------------------------------------------------------------------------------------
# Event sinks


class EventSink(Protocol):
    """Where events go. ``emit`` is called from a background thread and must not block long."""

    def emit(self, event: Event) -> None:
        """Deliver one event (``queued``, ``attempt``, ``sent``, ``delivered``, ``failed``...)."""

    def close(self) -> None:
        """Flush and release resources."""


# --------------------------------------------------------------------------------------------
# Storage

#: Per-channel statistics cover the attempts that finished in this many seconds before ``now``.
STATS_WINDOW_SECONDS = 24 * 3600.0


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

    It applies only when the message is in ``expected_statuses`` (if given) and, when
    ``expected_owner`` is given, still leased by that worker. Fields left ``None`` keep their
    value. Leases are released unless ``keep_lease``.
    """

    message_id: str
    status: Status
    expected_statuses: frozenset[Status] | None = None
    expected_owner: str | None = None
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
class OtpRecord:
    """A stored OTP: only the keyed hash of the code, never the code."""

    id: str
    recipient: str
    purpose: str
    code_hash: bytes
    created_at: float
    expires_at: float
    message_id: str | None = None
    consumed_at: float | None = None


class OtpIssueOutcome(enum.StrEnum):
    ISSUED = "issued"
    COOLDOWN = "cooldown"
    HOURLY_LIMIT = "hourly_limit"


class OtpVerifyOutcome(enum.StrEnum):
    VERIFIED = "verified"
    INVALID = "invalid"
    EXPIRED = "expired"
    LOCKED = "locked"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


@attrs.frozen(kw_only=True)
class StorageStats:
    """Counts for metrics, computed by the backend."""

    total: int
    queue_size: int
    by_status: Mapping[str, int]
    channels: Mapping[str, ChannelStats]
    oldest_due_age_seconds: float | None = None


class StorageBackend(Protocol):
    """The durable queue and records. Every method is atomic and safe across threads and
    processes. The contract suite in ``tests/contract`` holds every backend to the same rules.
    """

    name: str

    # -- queue ---------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        """Insert all messages in one transaction, with their ``queued`` events.

        A message whose idempotency key is already used (within 24 h) with the same fingerprint
        is not inserted: its existing id comes back with ``created=False``. The same key with a
        different fingerprint raises :class:`IdempotencyConflict` and nothing is written.
        """

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float) -> list[Message]:
        """Lease up to ``limit`` due messages to ``worker_id``, highest priority first, then
        earliest due, then oldest. A message is due when claimable and ``due_at <= now``, or
        when it is ``sending`` under an expired lease (its worker died). Each message goes to
        exactly one caller; claimed messages are ``sending``.
        """

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        """Extend the lease of every message that is ``sending`` under ``worker_id`` to
        ``now + lease_seconds``, in one statement; returns how many. The dispatcher's heartbeat
        calls it every few seconds, so leases can be short and a dead worker's messages are
        claimed again soon, while a live worker keeps its own however long a send takes.
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
        """The attempt the provider knows by this id."""

    def set_attempt_delivery_status(
        self, provider_message_id: str, status: Status, allowed_from: frozenset[Status | None], now: float
    ) -> bool:
        """Set the attempt's delivery status if its current one is in ``allowed_from``."""

    # -- OTP -----------------------------------------------------------------------------------
    def issue_otp(
        self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int, now: float
    ) -> tuple[OtpIssueOutcome, float]:
        """In one transaction: enforce the resend cooldown and hourly cap for the recipient,
        invalidate its active codes for the purpose, store ``otp`` and enqueue ``message``.
        Returns the outcome and, when refused, seconds until a new code may be issued.
        """

    def verify_otp(
        self, recipient: str, purpose: str, candidate_hash: bytes, *, max_failures: int,
        lockout_seconds: float, now: float,
    ) -> OtpVerifyOutcome:
        """In one transaction: refuse when the recipient is locked out; compare the candidate
        with the active code in constant time; consume it on a match before expiry (exactly one
        concurrent verifier wins); EXPIRED only for the right code after expiry (so the answer
        reveals nothing to someone without the code); otherwise count a failure against the
        recipient (across codes) and answer INVALID, or TOO_MANY_ATTEMPTS on the failure that
        reaches ``max_failures``. Failures count within ``lockout_seconds`` of the first; the one
        that reaches ``max_failures`` starts the lockout, which lasts ``lockout_seconds`` (LOCKED).
        """

    # -- shared state --------------------------------------------------------------------------
    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        """GCRA rate limit: take ``cost`` tokens from bucket ``key`` (one token per ``interval``
        seconds, ``burst`` at most), using :func:`otpagent.ratelimit.gcra`. Returns the wait:
        granted when ``<= max_wait`` (the slot is reserved; act after that many seconds; 0.0
        with the default), refused otherwise (nothing taken; seconds until it would be allowed).

        Backends may also offer ``acquire_all(buckets, now) -> list[float]``: one token from
        each ``(key, interval, burst)`` or from none, in one write (see
        :func:`otpagent.storage.sqlrules.acquire_all`). The API's abuse limits use it when
        present and fall back to one ``acquire`` per bucket.
        """

    def get_state(self, key: str) -> str | None:
        """A shared value (circuit state, learned statistics...), or None."""

    def put_state(self, key: str, value: str, *, only_if_absent: bool = False) -> str:
        """Store a shared value; with ``only_if_absent``, keep an existing one. Returns the
        value now stored.
        """

    def update_state(self, key: str, update: Callable[[str | None], str]) -> str:
        """Atomically replace a shared value with ``update(current)`` (``None`` when absent);
        returns the new value. ``update`` must be quick and free of side effects: it runs
        inside the transaction and may be re-run by backends that retry.
        """

    def states_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every shared value whose key starts with ``prefix``."""

    def remember_event_id(self, source: str, event_id: str, now: float) -> bool:
        """Record a provider event id; False when it was seen before (a replay)."""

    # -- metrics and housekeeping --------------------------------------------------------------
    def redact_expired_secrets(self, now: float) -> int:
        """Clear the OTP code of every message whose ``expires_at`` has passed (whatever its
        status); returns how many. Called every few seconds by each dispatcher.
        """

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        """Cost of attempts finished since ``since``, by channel and UTC day (``YYYY-MM-DD``)."""

    def stats(self, now: float) -> StorageStats:
        """Counts by status, queue size, and per-channel performance over the attempts that
        finished in the last :data:`STATS_WINDOW_SECONDS` (recent behaviour is what routing and
        dashboards need, and the cost stays bounded however long the history is).
        """

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        """Delete finished messages (with their attempts and events), used OTPs and seen event
        ids older than ``older_than``; returns rows deleted per table.
        """

    def ping(self) -> None:
        """Raise when the store is unreachable."""

    def close(self) -> None:
        """Release connections."""


def storage_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """The backend's own keys of a ``storage`` config section (everything but ``backend``)."""
    return {k: v for k, v in section.items() if k != "backend"}


@attrs.frozen(kw_only=True)
class PluginContext:
    """What every factory may need besides its own config section.

    ``storage`` is None only for storage factories (the store is being built).
    """

    config_dir: Any  # pathlib.Path: where relative paths in config resolve
    storage: StorageBackend | None = None
    public_url: str | None = None
    clock: Callable[[], float] = time.time


@attrs.frozen(kw_only=True)
class ChannelSpec:
    """A channel's validated config section, handed to its factory.

    ``settings`` is the whole section as written (after ``${ENV}`` interpolation), so a plugin
    can read keys of its own; the common keys are parsed into the other fields.
    """

    name: str
    plugin: str
    kind: str | None
    settings: Mapping[str, Any]
    api_config: Mapping[str, Any]
    cost: float | None
    context: PluginContext
