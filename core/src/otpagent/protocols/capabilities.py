"""Optional storage capabilities: small protocols a backend declares in ``capabilities``.

A backend implements the required core (:class:`~otpagent.protocols.storage.StorageBackend`)
plus whichever of these it can. When the agent is built, each capability its configuration
needs is checked once (declared *and* structurally present, see
:mod:`otpagent.storage.capabilities`); a missing one is a :class:`~otpagent.errors.ConfigError`
naming the backend, the capability and the config key that needs it. Components then receive
the typed capability, never a backend they would have to probe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from otpagent.model import Event, Status
from otpagent.protocols.activity import ActivityBucket, AttemptTally
from otpagent.protocols.otp import BatchIssueResult, OtpIssue, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.protocols.provider_events import ProviderEvent, ProviderEventResult
from otpagent.protocols.sinks import WebhookOutbox
from otpagent.protocols.storage import EnqueueResult, MessageUpdate, MessageWrite, NewMessage, StorageStats

__all__ = ["BatchUpdates", "Housekeeping", "OtpStore", "ProviderEvents", "RateLimits", "SharedState", "StreamedEnqueue",
           "WebhookOutboxes", "WorkWakeup"]


@runtime_checkable
class SharedState(Protocol):
    """Small shared key/values: circuit breakers, provider ``Retry-After`` pauses, adaptive
    routing's posteriors, the OTP key's fingerprint, the API's idempotency records, the fraud
    guard's counts and holds.

    Needed by every configuration (config key ``circuit``: the breakers always run).
    """

    def get_state(self, key: str) -> str | None:
        """A shared value, or None."""

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
        """Every shared value whose key starts with ``prefix`` (literally: no wildcards)."""


@runtime_checkable
class RateLimits(Protocol):
    """GCRA token buckets that hold across every process sharing the store.

    Needed when a channel has a ``rate_limit`` (``channels.<name>.rate_limit``), when
    ``otp.per_country_per_minute`` or ``otp.global_per_minute`` is set, and by the service's
    abuse limits (``server.limits``).
    """

    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        """Take ``cost`` tokens from bucket ``key`` (one token per ``interval`` seconds,
        ``burst`` at most), by :func:`otpagent.ratelimit.gcra`. Returns the wait: granted when
        ``<= max_wait`` (the slot is reserved; act after that many seconds; 0.0 with the
        default), refused otherwise (nothing taken; seconds until it would be allowed).
        With ``max_wait`` of ``-math.inf`` it is a peek: never granted, it only reports the
        wait (positive when the bucket has no token), and backends answer it with a read of
        the committed state, without a lock or a write.
        """

    def acquire_all(self, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
        """One token from every bucket ``(key, interval, burst)`` (distinct keys), or from none,
        in one transaction. Returns each bucket's wait in the order given: all 0.0 when granted;
        otherwise nothing was taken and a positive wait marks each bucket that had no token.
        """


@runtime_checkable
class OtpStore(Protocol):
    """One-time codes: issue under resend limits, verify atomically, forget expired codes.

    Needed unless ``otp.enabled`` is false.
    """

    def issue_otp(
        self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int, now: float,
        buckets: Sequence[tuple[str, float, int]] = (),
    ) -> tuple[OtpIssueOutcome, float]:
        """In one transaction: enforce the resend cooldown and hourly cap for the recipient,
        invalidate its active codes for the purpose, store ``otp`` and enqueue ``message``.
        Returns the outcome and, when refused, seconds until a new code may be issued.

        ``buckets`` (the caller's rate limits, ``(key, interval, burst)``, distinct keys): first
        take one token from each, all or none, as ``RateLimits.acquire_all``. When any is
        empty, raise :class:`~otpagent.errors.LimitsRefused` with each bucket's wait and write
        nothing else (:func:`otpagent.ratelimit.require_granted`). Tokens taken stay taken
        whatever the issue then answers. A backend takes them in the same write as the issue
        when that saves a commit (SQLite: one fsync per request, not two), or in a statement of
        its own just before it (PostgreSQL: a bucket every request touches stays locked for
        that statement only). Only passed when non-empty.
        """

    def issue_batch(
        self, items: Sequence[NewMessage | OtpIssue], *, cooldown_seconds: float, max_per_hour: int, now: float
    ) -> BatchIssueResult:
        """In ONE transaction, in order: enqueue each plain message (as ``enqueue``) and issue
        each code (as ``issue_otp``); a code whose message's idempotency key already holds a
        message (within the window, same fingerprint) issues nothing and answers that message
        (``created=False``). When the resend limits refuse any code, nothing at all is written
        and ``refused`` lists every refusal. :func:`otpagent.storage.batch_issue.issue_batch`
        is the algorithm; a key reused with another request raises ``IdempotencyConflict``.
        """

    def verify_otp(
        self, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int, now: float,
        buckets: Sequence[tuple[str, float, int]] = (),
    ) -> OtpVerifyOutcome:
        """In one transaction, against the recipient's live code for the purpose (the newest one
        neither consumed, replaced nor dead), comparing in constant time even when there is none:

        - it matches and has not expired: consume it, VERIFIED (of concurrent correct
          verifiers exactly one wins);
        - it matches but has expired: EXPIRED (only someone holding the code learns it);
        - no live code, or it has expired, or it already used up ``max_attempts``: NO_LIVE_CODE,
          and nothing is written: a guess against a number without a live code counts against
          nobody, so no stranger can lock a recipient out;
        - otherwise the guess is wrong: count it against that code; the guess that brings its
          count to ``max_attempts`` kills the code (it never verifies again) and answers
          TOO_MANY_ATTEMPTS, earlier ones INVALID.

        Guesses per recipient are bounded by ``max_attempts`` times the codes the resend limits
        allow (``issue_otp``); the budget of whoever guesses is kept by the caller.

        ``buckets``: taken first, all or none, as in ``issue_otp``; when refused, nothing is
        compared or written.
        """

    def seal_legacy_secrets(self, seal: Callable[[str, str], str], now: float) -> int:
        """In one transaction, put away what otpagent before sealed codes left in the store:
        every message ``secret`` that does not start with ``enc1:`` becomes
        ``seal(message_id, secret)`` (or is cleared when the message's ``expires_at`` has
        passed), and the shared state key ``otp.server_key`` (the HMAC key older versions kept
        in the store) is deleted. Returns how many values were sealed, cleared or deleted; the
        agent calls it at every start, so it must be cheap when there is nothing to do. A
        backend that writes files should leave no copy of the old values behind where it can
        help it (SQLite: secure delete and a truncating WAL checkpoint).
        """

    def redact_expired_secrets(self, now: float) -> int:
        """Clear the OTP code of every message whose ``expires_at`` has passed (whatever its
        status); returns how many. Called every few seconds by each dispatcher.
        """


@runtime_checkable
class ProviderEvents(Protocol):
    """Provider status callbacks, de-duplicated and applied in one transaction.

    Needed when provider callbacks are wired: ``server.public_url`` is set (Twilio channels
    then ask for status callbacks); channel plugins that take callbacks through keys of their
    own (Twilio's ``callback_base_url``, SendGrid's ``webhook_public_key``) check it too.
    """

    def apply_provider_event(
        self, event: ProviderEvent, *, allowed_from: frozenset[Status | None], update: MessageUpdate | None,
        events: Sequence[Event], now: float,
    ) -> ProviderEventResult:
        """In ONE transaction:

        - no attempt has ``event.provider_message_id``: UNKNOWN, nothing is written (not even
          the event id: the provider's retry may find the attempt);
        - ``(event.source, event.event_id)`` was seen before: REPLAY, nothing else happens;
        - otherwise remember it; if the latest attempt with that provider id has a delivery
          status in ``allowed_from``, move it to ``event.status`` (APPLIED), else STALE;
        - when APPLIED and ``update`` is given, apply it conditionally (as ``update_message``)
          and insert ``events`` only if it applied (``message_updated``).

        If anything raises, everything rolls back, the event id included, so the provider's
        retry of the same event applies it.
        """


@runtime_checkable
class Housekeeping(Protocol):
    """Statistics for metrics, dashboards and routing, fleet activity over a window, spend per
    day, and retention.

    Needed by every configuration (config key ``cleanup``: the dispatcher deletes old records).
    """

    def stats(self, now: float) -> StorageStats:
        """Counts by status, queue size, and per-channel performance over the attempts that
        finished in the last :data:`~otpagent.protocols.storage.STATS_WINDOW_SECONDS` (recent
        behaviour is what routing and dashboards need, and the cost stays bounded however long
        the history is).
        """

    def event_counts(self, since: float, now: float) -> Mapping[str, int]:
        """How many events of each :data:`~otpagent.protocols.activity.ACTIVITY_EVENT_TYPES`
        type the whole fleet recorded with ``since <= at <= now`` (retries, fallbacks, failures,
        expiries...); types with none may be absent. Count with the explicit list of types, so an
        index on the events' type and time serves it whatever the size of the table.
        """

    def attempt_counts(self, since: float, now: float) -> Mapping[str, AttemptTally]:
        """Each channel's attempts by outcome with ``since <= finished_at <= now``, fleet-wide;
        channels with none may be absent."""

    def history(self, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
        """Both counts (attempts of every channel together) in consecutive buckets of
        ``bucket_seconds`` from ``since``: ``ceil((now - since) / bucket_seconds)`` buckets, empty
        ones included, oldest first; an event at exactly ``now`` falls in the last. Raises
        ``ValueError`` for a bucket that is not positive, ``now < since``, or more than
        :data:`~otpagent.protocols.activity.MAX_HISTORY_BUCKETS` buckets.
        """

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        """Cost of attempts finished since ``since``, by channel and UTC day (``YYYY-MM-DD``)."""

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        """Delete finished messages (with their attempts and events), expired OTPs, seen
        provider event ids and ownerless events older than ``older_than``, and rate-limit
        buckets idle for an hour; returns rows deleted per table (``messages``,
        ``delivery_reports``, ``events``, ``otps``, ``seen_events``).
        """


@runtime_checkable
class WebhookOutboxes(Protocol):
    """The durable outbox behind signed outgoing webhooks.

    Needed by each ``webhook`` sink (``sinks[<i>].plugin``).
    """

    def webhook_outbox(self) -> WebhookOutbox:
        """The store's outbox (the same object on every call is fine)."""


@runtime_checkable
class WorkWakeup(Protocol):
    """Wake idle workers when work arrives anywhere, instead of at their next poll.

    Optional: nothing in the configuration needs it; without it the dispatcher polls every
    ``dispatcher.poll_interval_seconds``.
    """

    def wait_for_work(self, timeout: float) -> None:
        """Block until a message may have been enqueued (by any process) since the last
        ``claim_due`` began, or ``timeout`` seconds pass. Spurious returns are fine; it must
        never raise for a lost connection.

        The dispatcher takes a backend with this capability at its word: after a ``claim_due``
        that returned fewer messages than its ``limit`` (so nothing else was due when it looked),
        it claims again only once this returns. ``claim_due`` must therefore return every due
        message up to ``limit``, never a smaller batch of its own choosing.
        """


@runtime_checkable
class BatchUpdates(Protocol):
    """Record many outcomes in one call, so that a worker can hand its outcomes to one writer
    thread and go on sending while they are written in batches.

    Optional: without it every worker thread records its own outcome with ``update_message``
    (group commit, where the backend has it, still shares the commits) before it takes the
    next message.
    """

    def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        """Apply each write exactly as ``update_message(w.update, w.now, attempt=w.attempt,
        events=w.events)`` would, in order, each atomic on its own (one that fails leaves the
        others as they are), committed before this returns; the backend may share one
        transaction and one statement among them. A batch names each message at most once.

        Returns, for each write, whether its update applied, or the exception that kept that
        write from being written (nothing of it is). Raising means nothing can be said of
        any write: the caller then treats each as unrecorded.
        """


@runtime_checkable
class StreamedEnqueue(Protocol):
    """Enqueue a batch while the caller is still validating it: the backend writes each chunk
    as it arrives (PostgreSQL: sends its insert without waiting for the answer) and commits
    after the last, so the database's work overlaps the caller's. See :mod:`otpagent.bulk_intake`.

    Optional: without it a bulk send is validated whole, then written with ``enqueue``. It
    gains only where the writes run outside the calling process (a database server); a backend
    with nothing to overlap may take the stream whole and ``enqueue`` it (SQLite and memory do).
    """

    def enqueue_stream(self, chunks: Iterable[Sequence[NewMessage]], now: float) -> list[EnqueueResult]:
        """Exactly ``enqueue`` of every chunk's items, in order, in ONE transaction: all or
        nothing, one result per item, an ``IdempotencyConflict`` naming the item's position in
        the whole stream. Iterating ``chunks`` may raise (a later request is invalid): then
        nothing is written and that exception propagates. A backend that retries after a lost
        connection replays the chunks it already took; it never iterates ``chunks`` twice.
        """
