"""The embedded storage backend: one SQLite file in WAL mode.

Every write runs in a ``BEGIN IMMEDIATE`` transaction, so claims, attempts, OTP checks and
rate-limit buckets are atomic across threads *and* processes; concurrent writes of one process
are group-committed (see :mod:`otpagent.storage.sqlite_writer`). The rules and the reads are the
ones PostgreSQL runs too (:mod:`~otpagent.storage.sqlrules`, :mod:`~otpagent.storage.sqlreads`).
Durability: ``synchronous=FULL`` by default (a commit survives power loss); ``"normal"``
survives a process crash but may lose the last commits on power loss, for more throughput.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from otpagent.errors import ConfigError
from otpagent.logs import get_logger
from otpagent.model import Attempt, Event, Message, Status
from otpagent.protocols import (
    IDEMPOTENCY_WINDOW_SECONDS,
    ActivityBucket,
    AttemptTally,
    BatchIssueResult,
    Capability,
    EnqueueResult,
    IdempotencyConflict,
    MessageUpdate,
    MessageWrite,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
    PluginContext,
    ProviderEvent,
    ProviderEventResult,
    StorageStats,
)
from otpagent.ratelimit import gcra, require_granted, take_all
from otpagent.settings import describes, setting, structure
from otpagent.storage import batch_issue, gathering, sqlite_intake, sqlreads, sqlrules
from otpagent.storage.rows import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    attempt_values,
    event_to_row,
    message_from_row,
    message_values,
    queued_event_row,
)
from otpagent.storage.sqlite_outbox import SqliteWebhookOutbox
from otpagent.storage.sqlite_schema import migrate
from otpagent.storage.sqlite_wakepipe import WakePipe, wake_pipe
from otpagent.storage.sqlite_wakeup import DataVersionWatch
from otpagent.storage.sqlite_writer import DEFAULT_PAGE_SIZE, PAGE_SIZES, SqliteTx, SqliteWriter

__all__ = ["SqliteStorage", "create_sqlite_storage"]

log = get_logger("otpagent.storage")

_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})"
)
_INSERT_ATTEMPT = (
    f"INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))})"
)
# The statuses are literals, not parameters: only then can SQLite prove the query matches the
# partial index and walk it in claim order, stopping at LIMIT, whatever the queue's size.
_READY = (f"SELECT * FROM messages INDEXED BY messages_ready WHERE status IN ({sqlrules.CLAIMABLE_SQL}) "
          "AND due_at <= ? ORDER BY priority DESC, due_at, seq LIMIT ?")
#: The most recently updated messages: the newest ``?`` of each status, each walked backwards on
#: ``messages_status_updated`` (``seq`` is the rowid, the index's last key) and stopping at its
#: LIMIT, then merged. A plain ``ORDER BY updated_at`` would read the whole table for it.
RECENT = ("SELECT * FROM (" + " UNION ALL ".join(
    f"SELECT * FROM (SELECT * FROM messages WHERE status = '{s.value}' ORDER BY updated_at DESC, seq DESC LIMIT ?)"
    for s in Status) + ") ORDER BY updated_at DESC, seq DESC LIMIT ?")


@attrs.frozen
class SqliteSettings:
    """``storage`` for the ``sqlite`` backend (the default)."""

    backend: str = setting("sqlite", choices=("sqlite",))
    path: str = setting("otpagent.db", min_length=1, doc="The database file (relative to the config file); "
                                                          "':memory:' is not supported: use a file")
    synchronous: str = setting("full", choices=("full", "normal"),
                               doc="full survives power loss; normal survives a process crash, for more throughput")
    busy_timeout_seconds: float = setting(30.0, gt=0, doc="How long a writer waits for another process's lock")
    page_size: int = setting(DEFAULT_PAGE_SIZE, choices=PAGE_SIZES,
                             doc="Bytes per page of a database this creates (an existing file keeps its own)")


@describes(SqliteSettings)
def create_sqlite_storage(settings: Mapping[str, Any], context: PluginContext) -> SqliteStorage:
    """Factory registered as ``sqlite``: ``{"backend": "sqlite", "path": ..., "synchronous": ...}``."""
    s = structure(SqliteSettings, settings, path="storage")
    path = Path(s.path)
    if not path.is_absolute():
        path = Path(context.config_dir) / path
    return SqliteStorage(path, synchronous=s.synchronous, busy_timeout=s.busy_timeout_seconds, page_size=s.page_size)


class SqliteStorage(SqliteWriter):
    """A :class:`~otpagent.protocols.StorageBackend` on one SQLite file, with every capability
    (the work wake-up is a pipe beside the file, :mod:`otpagent.storage.sqlite_wakepipe`, or where
    there can be none a watch on ``PRAGMA data_version``, :mod:`otpagent.storage.sqlite_wakeup`).
    """

    name = "sqlite"
    capabilities = frozenset(Capability)

    def __init__(self, path: str | Path, *, synchronous: str = "full", busy_timeout: float = 30.0,
                 page_size: int = DEFAULT_PAGE_SIZE) -> None:
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout, page_size=page_size)
        self._outbox: SqliteWebhookOutbox | None = None
        self._outbox_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            migrate(self._conn(), begin=self._begin_immediate)
        except sqlite3.Error as exc:
            raise ConfigError("storage.path", f"cannot open SQLite database {str(self.path)!r}: {exc}") from None
        #: Wakes workers of every process when this one commits a message (None: they poll).
        self._pipe: WakePipe | None = wake_pipe(self.path)
        self._watch: WakePipe | DataVersionWatch = self._pipe or DataVersionWatch(self._conn)

    def wait_for_work(self, timeout: float) -> None:
        """Block until another connection (any process) added a message, or ``timeout`` seconds
        pass (the work wake-up capability)."""
        self._watch.wait_for_work(timeout)

    def _announce(self) -> None:
        """Wake the workers waiting on this file, in any process: a message was just committed."""
        if self._pipe is not None:
            self._pipe.poke()

    def close(self) -> None:
        super().close()
        if self._pipe is not None:
            self._pipe.close()

    # -- queue ---------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        if sqlite_intake.goes_to_intake(items):  # one row, moved into messages by the next claim
            row = sqlite_intake.intake_row(items[0], now)
            self._grouped(lambda conn: conn.execute(sqlite_intake.INSERT_INTAKE, (row,)), gather=True)
            self._announce()
            return [EnqueueResult(message_id=items[0].message.id, created=True)]
        results = self._grouped(lambda conn: self._enqueue(conn, items, now), gather=True)
        if any(r.created for r in results):
            self._announce()
        return results

    def enqueue_stream(self, chunks: Iterable[Sequence[NewMessage]], now: float) -> list[EnqueueResult]:
        """The stream taken whole, then one ``enqueue``: SQLite writes in the calling process,
        so there is nothing for the caller's validation to overlap with (PostgreSQL's server
        inserts one chunk while the next is validated). A raise while taking writes nothing."""
        return self.enqueue([item for chunk in chunks for item in chunk], now)

    def _enqueue(self, conn: sqlite3.Connection, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        results: list[EnqueueResult] = []
        fresh: list[NewMessage] = []
        in_batch: dict[str, NewMessage] = {}  # keys first used earlier in this same batch
        for index, item in enumerate(items):
            m = item.message
            if m.idempotency_key is not None and m.idempotency_key in in_batch:
                first = in_batch[m.idempotency_key]
                if first.fingerprint != item.fingerprint:
                    raise IdempotencyConflict(m.idempotency_key, index)
                results.append(EnqueueResult(message_id=first.message.id, created=False))
                continue
            if m.idempotency_key is not None:
                in_batch[m.idempotency_key] = item
                existing = conn.execute(
                    "SELECT id, fingerprint, created_at FROM messages WHERE idempotency_key = ?",
                    (m.idempotency_key,),
                ).fetchone()
                if existing is not None:
                    if existing["created_at"] >= now - IDEMPOTENCY_WINDOW_SECONDS:
                        if existing["fingerprint"] != item.fingerprint:
                            raise IdempotencyConflict(m.idempotency_key, index)
                        results.append(EnqueueResult(message_id=existing["id"], created=False))
                        continue
                    # The key expired: free it for the new message.
                    conn.execute("UPDATE messages SET idempotency_key = NULL WHERE id = ?", (existing["id"],))
            fresh.append(item)
            results.append(EnqueueResult(message_id=m.id, created=True))
        conn.executemany(_INSERT_MESSAGE, [message_values(i.message, i.fingerprint) for i in fresh])
        conn.executemany(sqlrules.INSERT_EVENT, [queued_event_row(i.message, now) for i in fresh])
        return results

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float, *,
                  reclaim: bool = True) -> list[Message]:
        if limit <= 0:
            return []
        self._watch.mark()  # a wait after this claim then sees what came meanwhile
        # Not durable: a claim lost to a power cut is claimed again, as a dead worker's is.
        rows, lease_until = self._grouped(lambda conn: self._claim(conn, worker_id, limit, lease_seconds, now,
                                                                   reclaim), durable=False)
        return [message_from_row(r, status=Status.SENDING, lease_owner=worker_id, lease_expires_at=lease_until,
                                 updated_at=now) for r in rows]

    @staticmethod
    def _claim(conn: sqlite3.Connection, worker_id: str, limit: int, lease_seconds: float,
               now: float, reclaim: bool) -> tuple[list[Any], float]:
        sqlite_intake.absorb(conn)  # lone enqueues become messages first (see sqlite_intake)
        # Two index-friendly queries (expired leases, ready messages), each up to ``limit``,
        # merged so that an expired lease never jumps ahead of higher-priority work.
        # INDEXED BY: left to itself, SQLite walks messages_status over every message in flight
        # (all of them sending) and sorts them, on every claim: O(in flight) instead of O(expired).
        rows = conn.execute(
            "SELECT * FROM messages INDEXED BY messages_leased WHERE status = 'sending' AND lease_expires_at <= ? "
            "ORDER BY priority DESC, due_at, seq LIMIT ?",
            (now, limit),
        ).fetchall() if reclaim else []
        rows += conn.execute(_READY, (now, limit)).fetchall()
        lease_until = now + lease_seconds
        if not rows:
            return [], lease_until
        rows.sort(key=lambda r: (-r["priority"], r["due_at"], r["seq"]))
        rows = rows[:limit]
        conn.executemany(
            "UPDATE messages SET status = 'sending', lease_owner = ?, lease_expires_at = ?, updated_at = ? "
            "WHERE id = ?",
            [(worker_id, lease_until, now, r["id"]) for r in rows],
        )
        return rows, lease_until

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        return self._grouped(lambda conn: conn.execute(sqlrules.RENEW_LEASES,
                                                       (now + lease_seconds, worker_id)).rowcount)

    def update_message(
        self, update: MessageUpdate, now: float, *, attempt: Attempt | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        return self._grouped(functools.partial(_write_outcome, MessageWrite(update=update, now=now, attempt=attempt,
                                                                             events=events)))

    def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        """All in one transaction, as one piece of the group commit: the attempts in one
        statement, each update, the applied writes' events in one statement (a savepoint and
        its release for each write cost as much as its update). Should that piece fail, it is
        rolled back and each write runs under its own savepoint (see :meth:`_grouped`), so the
        one that fails is rolled back alone and the others are applied."""
        if len(writes) > 1:
            try:
                return list(self._grouped(functools.partial(_write_outcomes, writes)))
            except Exception:  # found again below, write by write
                log.debug("outcomes_written_one_by_one", count=len(writes))
        return self._grouped_each([functools.partial(_write_outcome, write) for write in writes])

    def settle_intake(self) -> None:
        """Move what ``intake`` holds into ``messages`` (see :mod:`otpagent.storage.sqlite_intake`),
        a batch a transaction, so that a read after it sees every message enqueued before it. A
        read on the primary key when there is nothing to move."""
        conn = self._conn()
        if not sqlite_intake.has_pending(conn):
            return
        pending = conn.execute("SELECT COUNT(*) FROM intake").fetchone()[0]
        for _ in range(pending // sqlite_intake.ABSORB_BATCH + 1):  # what was there: others may add
            if self._grouped(sqlite_intake.absorb) < sqlite_intake.ABSORB_BATCH:
                return

    def _settled(self) -> sqlite3.Connection:
        """This thread's connection, to read after :meth:`settle_intake`."""
        self.settle_intake()
        return self._conn()

    def get_message(self, message_id: str) -> Message | None:
        return sqlreads.get_message(SqliteTx(self._settled()), message_id)

    def get_attempts(self, message_id: str) -> list[Attempt]:
        return sqlreads.get_attempts(SqliteTx(self._conn()), message_id)

    def get_events(self, message_id: str) -> list[Event]:
        return sqlreads.get_events(SqliteTx(self._settled()), message_id)

    def recent_messages(self, limit: int) -> list[Message]:
        rows = self._settled().execute(RECENT, [limit] * (len(Status) + 1)).fetchall()
        return [message_from_row(r) for r in rows]

    def find_by_provider_id(self, provider_message_id: str) -> Attempt | None:
        return sqlreads.find_by_provider_id(SqliteTx(self._conn()), provider_message_id)

    def apply_provider_event(
        self, event: ProviderEvent, *, allowed_from: frozenset[Status | None], update: MessageUpdate | None,
        events: Sequence[Event], now: float,
    ) -> ProviderEventResult:
        return self._grouped(lambda conn: sqlrules.apply_provider_event(
            SqliteTx(conn), event, allowed_from=allowed_from, update=update, events=events, now=now))

    # -- OTP -----------------------------------------------------------------------------------
    def issue_otp(
        self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int, now: float,
        buckets: Sequence[tuple[str, float, int]] = (),
    ) -> tuple[OtpIssueOutcome, float]:
        def work(conn: sqlite3.Connection) -> tuple[OtpIssueOutcome, float]:
            # The caller's limits in the same write: a request waits for one commit, not two
            # (a refusal raises, and the group commit rolls this piece back alone).
            require_granted(buckets, _acquire_all(conn, buckets, now))
            return self._issue_in(conn, otp, message, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour,
                                  now=now)

        outcome = self._grouped(work, gather=True)
        if outcome[0] is OtpIssueOutcome.ISSUED:
            self._announce()
        return outcome

    def issue_batch(self, items: Sequence[NewMessage | OtpIssue], *, cooldown_seconds: float, max_per_hour: int,
                    now: float) -> BatchIssueResult:
        def work(conn: sqlite3.Connection) -> list[EnqueueResult]:
            ops = _SqliteBatchOps(self, conn, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour, now=now)
            return batch_issue.issue_batch(ops, items, now)

        try:  # a piece that raises is rolled back alone: BatchRefused undoes the whole batch
            results = tuple(self._grouped(work))
        except batch_issue.BatchRefused as refused:
            return BatchIssueResult(refused=refused.refused)
        if any(r.created for r in results):
            self._announce()
        return BatchIssueResult(results=results)

    def _issue_in(self, conn: sqlite3.Connection, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float,
                  max_per_hour: int, now: float) -> tuple[OtpIssueOutcome, float]:
        outcome = sqlrules.issue_otp(SqliteTx(conn), otp, cooldown_seconds=cooldown_seconds,
                                     max_per_hour=max_per_hour, now=now)
        if outcome[0] is OtpIssueOutcome.ISSUED:
            m = message.message
            if sqlite_intake.holds(m):  # the message as a lone enqueue's: one intake row
                conn.execute(sqlite_intake.INSERT_INTAKE, (sqlite_intake.intake_row(message, now),))
            else:
                conn.execute(_INSERT_MESSAGE, message_values(m, message.fingerprint))
                conn.execute(sqlrules.INSERT_EVENT, queued_event_row(m, now))
        return outcome

    def verify_otp(self, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int,
                   now: float, buckets: Sequence[tuple[str, float, int]] = ()) -> OtpVerifyOutcome:
        def work(conn: sqlite3.Connection) -> OtpVerifyOutcome:
            require_granted(buckets, _acquire_all(conn, buckets, now))  # as in issue_otp
            return sqlrules.verify_otp(SqliteTx(conn), recipient, purpose, candidate_hash, max_attempts=max_attempts,
                                       now=now)

        return self._grouped(work, gather=True)

    def seal_legacy_secrets(self, seal: Callable[[str, str], str], now: float) -> int:
        """Seal clear codes and delete the legacy key (see ``OtpStore``), then, if anything
        changed, checkpoint and truncate the WAL: the old pages held them in clear, and secure
        delete (set on every connection) has zeroed them in the pages written since."""
        with self.transaction() as conn:
            sqlite_intake.absorb_all(conn)  # every stored code is in ``messages`` for the rule below
            changed = sqlrules.seal_legacy_secrets(SqliteTx(conn), seal, now)
        if changed:
            with self._write_lock:  # best effort: another process's reader may keep old frames a while
                self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return changed

    # -- shared state --------------------------------------------------------------------------
    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        if max_wait == -math.inf:
            return self._peek(key, interval, burst, now, cost)
        return self._grouped(lambda conn: _acquire_all(conn, [(key, interval, burst)], now, cost, max_wait)[0],
                             gather=True)

    def _peek(self, key: str, interval: float, burst: int, now: float, cost: int) -> float:
        """The wait of a request that can never be granted (``max_wait`` of -inf): a read of the
        bucket's committed state, outside the write lock. A peek takes nothing, so it writes
        nothing and needs no fsync (the verify path peeks up to three failure budgets per call);
        callers already treat it as a snapshot that concurrent requests may move on from. In a
        gathered call the bucket is read once a round (``gathering.round_cache``): the API's
        verifications of a batch peek the same failure budgets, each read a read transaction."""
        cache = gathering.round_cache()
        if cache is None:
            tat = self._stored_tat(key)
        else:
            if (self, key) not in cache:
                cache[(self, key)] = self._stored_tat(key)
            tat = cache[(self, key)]
        return gcra(tat, now, interval, burst, cost, -math.inf)[1]

    def _stored_tat(self, key: str) -> float | None:
        row = self._conn().execute("SELECT tat FROM rate_limits WHERE key = ?", (key,)).fetchone()
        return float(row["tat"]) if row is not None and row["tat"] else None

    def acquire_all(self, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
        return self._grouped(lambda conn: _acquire_all(conn, buckets, now), gather=True)

    def get_state(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def put_state(self, key: str, value: str, *, only_if_absent: bool = False) -> str:
        def work(conn: sqlite3.Connection) -> str:
            if only_if_absent:
                conn.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value))
            else:
                conn.execute("INSERT INTO state (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
            return str(conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()["value"])

        return self._grouped(work)

    # -- metrics and housekeeping --------------------------------------------------------------
    def redact_expired_secrets(self, now: float) -> int:
        with self.transaction() as conn:
            sqlite_intake.absorb_all(conn)  # a code queued with no worker running waits there
            return conn.execute("UPDATE messages SET secret = NULL WHERE secret IS NOT NULL AND expires_at < ?",
                                (now,)).rowcount

    def stats(self, now: float) -> StorageStats:
        return sqlreads.stats(SqliteTx(self._settled()), now)

    def event_counts(self, since: float, now: float) -> dict[str, int]:
        return sqlreads.event_counts(SqliteTx(self._settled()), since, now)

    def attempt_counts(self, since: float, now: float) -> dict[str, AttemptTally]:
        return sqlreads.attempt_counts(SqliteTx(self._conn()), since, now)

    def history(self, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
        return sqlreads.history(SqliteTx(self._settled()), since, now, bucket_seconds)

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        with self.transaction() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM doomed")
            conn.execute(f"INSERT INTO doomed SELECT id FROM messages WHERE status IN ({sqlrules.FINISHED_SQL}) "
                         "AND updated_at < ?", (older_than,))
            counts["delivery_reports"] = conn.execute(
                "DELETE FROM delivery_reports WHERE message_id IN (SELECT id FROM doomed)").rowcount
            counts["events"] = conn.execute(
                "DELETE FROM events WHERE message_id IN (SELECT id FROM doomed) OR (message_id IS NULL AND at < ?)",
                (older_than,)).rowcount
            counts["messages"] = conn.execute("DELETE FROM messages WHERE id IN (SELECT id FROM doomed)").rowcount
            counts["otps"] = conn.execute("DELETE FROM otps WHERE expires_at < ?", (older_than,)).rowcount
            counts["seen_events"] = conn.execute("DELETE FROM seen_events WHERE seen_at < ?", (older_than,)).rowcount
            conn.execute("DELETE FROM rate_limits WHERE tat < ?", (now - 3600.0,))
            conn.execute("DELETE FROM doomed")
        return counts

    # -- routing and cost ----------------------------------------------------------------------
    def update_state(self, key: str, update: Callable[[str | None], str]) -> str:
        def work(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            value = update(None if row is None else str(row["value"]))
            conn.execute("INSERT INTO state (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
            return value

        return self._grouped(work)

    def states_with_prefix(self, prefix: str) -> dict[str, str]:
        rows = self._conn().execute("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                                    (prefix, prefix + "\uffff")).fetchall()
        return {str(r["key"]): str(r["value"]) for r in rows}

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for r in self._conn().execute(
            "SELECT channel, date(finished_at, 'unixepoch') AS day, SUM(cost) AS cost FROM delivery_reports "
            "WHERE finished_at >= ? GROUP BY channel, day", (since,)
        ):
            out.setdefault(str(r["channel"]), {})[str(r["day"])] = float(r["cost"] or 0.0)
        return out

    # -- webhooks ------------------------------------------------------------------------------
    def webhook_outbox(self) -> SqliteWebhookOutbox:
        """The durable outbox for ``webhook`` sinks, in this database (created on first use)."""
        with self._outbox_lock:
            if self._outbox is None:
                self._outbox = SqliteWebhookOutbox(self, settle=self.settle_intake)
            return self._outbox


class _SqliteBatchOps:
    """:class:`~otpagent.storage.batch_issue.BatchOps` on one open SQLite transaction."""

    def __init__(self, storage: SqliteStorage, conn: sqlite3.Connection, *, cooldown_seconds: float,
                 max_per_hour: int, now: float) -> None:
        self.storage, self.conn, self.now = storage, conn, now
        self.cooldown_seconds, self.max_per_hour = cooldown_seconds, max_per_hour

    def holder(self, key: str) -> tuple[str, str | None, float] | None:
        row = self.conn.execute("SELECT id, fingerprint, created_at FROM messages WHERE idempotency_key = ?",
                                (key,)).fetchone()
        return None if row is None else (row["id"], row["fingerprint"], row["created_at"])

    def enqueue(self, items: Sequence[NewMessage]) -> list[EnqueueResult]:
        return self.storage._enqueue(self.conn, items, self.now)

    def issue(self, issue: OtpIssue) -> tuple[OtpIssueOutcome, float]:
        return self.storage._issue_in(self.conn, issue.otp, issue.message, cooldown_seconds=self.cooldown_seconds,
                                      max_per_hour=self.max_per_hour, now=self.now)


def _acquire_all(conn: sqlite3.Connection, buckets: Sequence[tuple[str, float, int]], now: float, cost: int = 1,
                 max_wait: float = 0.0) -> list[float]:
    """``RateLimits.acquire_all`` (and ``acquire``: one bucket) in two statements, not two per
    bucket: under SQLite's write lock nothing else can move a bucket, so one read of them all
    and one upsert of the granted ones decide the same (PostgreSQL needs the row locks its
    upsert takes). The HTTP API takes two or three buckets per request inside the group commit,
    where every statement is a turn at the GIL for the thread holding the database."""
    if not buckets:
        return []
    keys = [key for key, _, _ in buckets]
    rows = conn.execute(f"SELECT key, tat FROM rate_limits WHERE key IN ({', '.join('?' * len(keys))})",
                        keys).fetchall()
    waits, granted = take_all({row["key"]: row["tat"] or None for row in rows}, buckets, now, cost, max_wait)
    if granted:
        conn.execute(f"INSERT INTO rate_limits (key, tat) VALUES {', '.join(['(?, ?)'] * len(granted))} "
                     "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat", [v for pair in granted for v in pair])
    return waits


def _write_outcomes(writes: Sequence[MessageWrite], conn: sqlite3.Connection) -> list[bool]:
    """Each write's attempt (always), its update (if its conditions hold) and then its events,
    merged: attempts, then updates, then events, each in write order. A batch never names a
    message twice, so the order between them is free. An update that matched no row moves what
    waits in intake and tries again (a cancel right after the enqueue)."""
    attempts = [attempt_values(w.attempt) for w in writes if w.attempt is not None]
    if attempts:
        conn.executemany(_INSERT_ATTEMPT, attempts)
    tx = SqliteTx(conn)
    applied = [sqlrules.message_update(tx, w.update, w.now) for w in writes]
    if not all(applied) and sqlite_intake.has_pending(conn) and sqlite_intake.absorb_all(conn):
        pairs = zip(applied, writes, strict=True)
        applied = [done or sqlrules.message_update(tx, w.update, w.now) for done, w in pairs]
    events = [event_to_row(e) for done, w in zip(applied, writes, strict=True) if done for e in w.events]
    if events:
        conn.executemany(sqlrules.INSERT_EVENT, events)
    return applied


def _write_outcome(write: MessageWrite, conn: sqlite3.Connection) -> bool:
    """One ``update_message``: the attempt always, the update if its conditions hold, and then
    its events."""
    return _write_outcomes((write,), conn)[0]
