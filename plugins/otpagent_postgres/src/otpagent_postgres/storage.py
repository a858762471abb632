"""The PostgreSQL :class:`~otpagent.protocols.StorageBackend`: one schema shared by a fleet.

Workers on any number of machines share the queue, OTPs, rate-limit buckets, circuit state and
statistics through the database. Claims lock rows with ``FOR UPDATE SKIP LOCKED`` so workers
never wait on each other; buckets and OTP checks serialise on row or advisory locks; every
operation retries across connection loss (see :mod:`otpagent_postgres.connection`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from otpagent.model import Attempt, Event, Message, Status
from otpagent.protocols import (
    ActivityBucket,
    AttemptTally,
    BatchIssueResult,
    Capability,
    EnqueueResult,
    MessageUpdate,
    MessageWrite,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
    ProviderEvent,
    ProviderEventResult,
    StorageStats,
)
from otpagent.ratelimit import require_granted
from otpagent.storage import sqlreads, sqlrules
from otpagent.storage.batch_issue import BatchRefused
from otpagent_postgres import housekeeping, queue
from otpagent_postgres import otp as otp_sql
from otpagent_postgres.buckets import acquire_buckets, peek_bucket
from otpagent_postgres.connection import Conn, Database, PgTx
from otpagent_postgres.groupcommit import GroupCommit, GroupedWrite
from otpagent_postgres.insert import insert_statement
from otpagent_postgres.notify import WorkListener
from otpagent_postgres.outbox import PostgresWebhookOutbox
from otpagent_postgres.outcomes import OUTCOMES
from otpagent_postgres.schema import migrate

__all__ = ["PostgresStorage"]

T = TypeVar("T")


class PostgresStorage:
    """A storage backend on one PostgreSQL schema, with every capability (LISTEN/NOTIFY gives
    the work wake-up)."""

    name = "postgres"
    capabilities = frozenset(Capability)

    def __init__(
        self, dsn: str, *, schema: str = "public", pool_min_size: int = 1, pool_max_size: int = 10,
        retry_seconds: float = 60.0, connect_timeout: float = 5.0, cleanup_batch_size: int = 1000,
    ) -> None:
        self.schema = schema
        self.cleanup_batch_size = cleanup_batch_size
        self._db = Database(dsn, schema, min_size=pool_min_size, max_size=pool_max_size,
                            retry_seconds=retry_seconds, connect_timeout=connect_timeout)
        try:
            with self._db.connect(options="") as conn:
                self.schema_version = migrate(conn, schema)
            self._db.open()
        except BaseException:
            self._db.close()
            raise
        self._group = GroupCommit(self._db)
        self._listener = WorkListener(lambda: self._db.connect(autocommit=True), schema)
        self._outbox: PostgresWebhookOutbox | None = None
        self._outbox_lock = threading.Lock()

    # -- queue ---------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        if not items:
            return []

        def work(conn: Conn, uncertain: bool) -> list[EnqueueResult]:
            return queue.enqueue(conn, items, now, uncertain, self.schema)

        if any(item.message.idempotency_key is not None for item in items):
            return self._db.run(work)
        # Nothing can clash: one statement, group-committed with other threads' writes.
        created = [EnqueueResult(message_id=item.message.id, created=True) for item in items]
        return self._group.run(GroupedWrite(work, insert_statement(items, now, self.schema), lambda _cur: created))

    def enqueue_stream(self, chunks: Iterable[Sequence[NewMessage]], now: float) -> list[EnqueueResult]:
        return queue.enqueue_stream(self._db, chunks, now, self.schema)

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float, *,
                  reclaim: bool = True) -> list[Message]:
        if limit <= 0:
            return []
        return self._db.run(lambda conn, _u: queue.claim_due(conn, worker_id, limit, lease_seconds, now, reclaim),
                            one_statement=True)

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        return self._db.run(lambda conn, _u: queue.renew_leases(conn, worker_id, now + lease_seconds),
                            one_statement=True)

    def wait_for_work(self, timeout: float) -> None:
        """Block until a message is enqueued anywhere in the fleet, or ``timeout`` seconds pass
        (the work wake-up capability): an idle dispatcher picks up new work within milliseconds.
        """
        self._listener.wait(timeout)

    def update_message(
        self, update: MessageUpdate, now: float, *, attempt: Attempt | None = None, events: Sequence[Event] = (),
    ) -> bool:
        """Group-committed with the other threads' outcomes (see :mod:`otpagent_postgres.groupcommit`)."""
        return self._group.run(_outcome_write(MessageWrite(update=update, now=now, attempt=attempt,
                                                           events=tuple(events))))

    def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        """One group commit: a single statement for them all when they can share one (see
        :mod:`otpagent_postgres.outcomes`), else one pipeline, each write alone on a failure."""
        return self._group.run_each([_outcome_write(write) for write in writes])

    def get_message(self, message_id: str) -> Message | None:
        return self._read(lambda tx: sqlreads.get_message(tx, message_id))

    def get_attempts(self, message_id: str) -> list[Attempt]:
        return self._read(lambda tx: sqlreads.get_attempts(tx, message_id))

    def get_events(self, message_id: str) -> list[Event]:
        return self._read(lambda tx: sqlreads.get_events(tx, message_id))

    def recent_messages(self, limit: int) -> list[Message]:
        return self._read(lambda tx: sqlreads.recent_messages(tx, limit))

    def find_by_provider_id(self, provider_message_id: str) -> Attempt | None:
        return self._read(lambda tx: sqlreads.find_by_provider_id(tx, provider_message_id))

    def apply_provider_event(
        self, event: ProviderEvent, *, allowed_from: frozenset[Status | None], update: MessageUpdate | None,
        events: Sequence[Event], now: float,
    ) -> ProviderEventResult:
        """One transaction, the attempt's row locked (``FOR UPDATE``) so concurrent reports of
        one message apply one after the other; a retry after an uncertain commit first checks
        what the first try left."""
        return self._db.run(lambda conn, uncertain: sqlrules.apply_provider_event(
            PgTx(conn), event, allowed_from=allowed_from, update=update, events=events, now=now,
            lock=" FOR UPDATE", uncertain=uncertain))

    def redact_expired_secrets(self, now: float) -> int:
        """Clear the OTP code of every message past its ``expires_at``, in batches."""
        total = 0
        for _ in range(1_000_000):
            n = self._db.run(lambda conn, _u: conn.execute(
                "UPDATE messages SET secret = NULL WHERE id IN (SELECT id FROM messages WHERE secret IS NOT NULL "
                "AND expires_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)", (now, self.cleanup_batch_size)).rowcount)
            total += n
            if n < self.cleanup_batch_size:
                break
        return total

    # -- OTP -----------------------------------------------------------------------------------
    def issue_otp(
        self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int, now: float,
        buckets: Sequence[tuple[str, float, int]] = (),
    ) -> tuple[OtpIssueOutcome, float]:
        self._take(buckets, now)
        return self._db.run(lambda conn, uncertain: otp_sql.issue_otp(
            conn, self.schema, otp, message, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour,
            now=now, uncertain=uncertain), pipelined=True)

    def issue_batch(self, items: Sequence[NewMessage | OtpIssue], *, cooldown_seconds: float, max_per_hour: int,
                    now: float) -> BatchIssueResult:
        try:
            return BatchIssueResult(results=tuple(self._db.run(lambda conn, uncertain: otp_sql.issue_batch(
                conn, self.schema, items, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour, now=now,
                uncertain=uncertain))))
        except BatchRefused as refused:  # the transaction rolled back: nothing of the batch was written
            return BatchIssueResult(refused=refused.refused)

    def verify_otp(self, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int,
                   now: float, buckets: Sequence[tuple[str, float, int]] = ()) -> OtpVerifyOutcome:
        self._take(buckets, now)
        return self._db.run(lambda conn, uncertain: otp_sql.verify_otp(
            conn, self.schema, recipient, purpose, candidate_hash, max_attempts=max_attempts, now=now,
            uncertain=uncertain), pipelined=True)

    def seal_legacy_secrets(self, seal: Callable[[str, str], str], now: float) -> int:
        """Seal clear codes and delete the legacy key, in one transaction (idempotent, so a
        retry after an uncertain commit finds nothing left to do)."""
        return self._db.run(lambda conn, _u: sqlrules.seal_legacy_secrets(PgTx(conn), seal, now))

    # -- shared state --------------------------------------------------------------------------
    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        if max_wait == -math.inf:  # a peek: a read, outside any transaction
            return self._db.run(lambda conn, _u: peek_bucket(conn, key, interval, burst, now, cost),
                                one_statement=True)
        return self._db.run(lambda conn, _u: acquire_buckets(
            conn, [(key, interval, burst)], now, cost=cost, max_wait=max_wait)[0], one_statement=True)

    def acquire_all(self, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
        return self._db.run(lambda conn, _u: acquire_buckets(conn, buckets, now), one_statement=True)

    def _take(self, buckets: Sequence[tuple[str, float, int]], now: float) -> None:
        """``buckets=`` of the OTP calls, in a statement of their own just before the work: a
        bucket every request touches (an API key's) is a hot row, locked for this one statement
        rather than across the issue's transaction; PostgreSQL commits concurrently, so the
        extra commit costs no queue (unlike SQLite's, which takes them in the same write)."""
        if buckets:
            require_granted(buckets, self.acquire_all(buckets, now))

    def get_state(self, key: str) -> str | None:
        row = self._one("SELECT value FROM state WHERE key = %s", (key,))
        return None if row is None else str(row["value"])

    def put_state(self, key: str, value: str, *, only_if_absent: bool = False) -> str:
        return self._db.run(lambda conn, _u: housekeeping.put_state(conn, key, value, only_if_absent))

    def update_state(self, key: str, update: Callable[[str | None], str]) -> str:
        return self._db.run(lambda conn, _u: housekeeping.update_state(conn, key, update))

    def states_with_prefix(self, prefix: str) -> dict[str, str]:
        return self._db.run(lambda conn, _u: housekeeping.states_with_prefix(conn, prefix))

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        return self._db.run(lambda conn, _u: housekeeping.costs_by_day(conn, since))

    # -- webhooks ------------------------------------------------------------------------------
    def webhook_outbox(self) -> PostgresWebhookOutbox:
        """The durable outbox for ``webhook`` sinks (the webhook outbox capability)."""
        with self._outbox_lock:
            if self._outbox is None:
                self._outbox = PostgresWebhookOutbox(self._db, batch_size=self.cleanup_batch_size)
            return self._outbox

    # -- metrics and housekeeping --------------------------------------------------------------
    def stats(self, now: float) -> StorageStats:
        return self._db.run(lambda conn, _u: sqlreads.stats(PgTx(conn), now))

    def event_counts(self, since: float, now: float) -> dict[str, int]:
        return self._db.run(lambda conn, _u: sqlreads.event_counts(PgTx(conn), since, now))

    def attempt_counts(self, since: float, now: float) -> dict[str, AttemptTally]:
        return self._db.run(lambda conn, _u: sqlreads.attempt_counts(PgTx(conn), since, now))

    def history(self, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
        sqlreads.history_buckets(since, now, bucket_seconds)  # refuse a bad window before connecting
        return self._db.run(lambda conn, _u: sqlreads.history(PgTx(conn), since, now, bucket_seconds))

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        return housekeeping.cleanup(self._db.run, older_than, now, self.cleanup_batch_size)

    def ping(self) -> None:
        with self._db.pool.connection(timeout=self._db.connect_timeout) as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self._listener.close()
        self._db.close()

    # -- reads ---------------------------------------------------------------------------------
    def _read(self, read: Callable[[PgTx], T]) -> T:
        """One read statement, in autocommit (one round trip)."""
        return self._db.run(lambda conn, _u: read(PgTx(conn)), one_statement=True)

    def _one(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        return self._db.run(lambda conn, _u: conn.execute(query.encode(), params).fetchone())


if TYPE_CHECKING:
    from otpagent.protocols import (
        Housekeeping,
        OtpStore,
        ProviderEvents,
        RateLimits,
        SharedState,
        StorageBackend,
        WebhookOutboxes,
        WorkWakeup,
    )

    # mypy checks the core and every declared capability here.
    _pg = PostgresStorage("")
    _core: StorageBackend = _pg
    _state: SharedState = _pg
    _limits: RateLimits = _pg
    _otp: OtpStore = _pg
    _provider_events: ProviderEvents = _pg
    _housekeeping: Housekeeping = _pg
    _outboxes: WebhookOutboxes = _pg
    _wakeup: WorkWakeup = _pg


def _outcome_write(write: MessageWrite) -> GroupedWrite[bool]:
    """``write`` for the group commit: a statement of its own, merged with the group's other
    outcomes where they can share one."""
    update, now, attempt, events = write.update, write.now, write.attempt, write.events
    return GroupedWrite(lambda conn, uncertain: queue.update_message(conn, update, now, attempt, events, uncertain),
                        lambda: queue.update_statement(update, now, attempt, events), queue.read_applied,
                        merge=OUTCOMES, item=write)
