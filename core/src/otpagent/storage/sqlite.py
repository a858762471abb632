"""The embedded storage backend: one SQLite file in WAL mode.

Every write runs in a ``BEGIN IMMEDIATE`` transaction, so claims, attempts, OTP checks and
rate-limit buckets are atomic across threads *and* processes. Within a process, writers queue
on a lock before asking SQLite, because SQLite's own busy handler sleeps in coarse steps, and
short writes from concurrent threads are group-committed: each under its own savepoint, all in
one transaction, so they share one fsync (``SqliteStorage._grouped``).
Durability: ``synchronous=FULL`` by default (a commit survives power loss); ``"normal"``
survives a process crash but may lose the last commits on power loss, for more throughput.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs

from otpagent.errors import ConfigError
from otpagent.model import CLAIMABLE_STATUSES, Attempt, Event, Message, Status
from otpagent.protocols import (
    STATS_WINDOW_SECONDS,
    ChannelStats,
    EnqueueResult,
    IdempotencyConflict,
    MessageUpdate,
    NewMessage,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
    PluginContext,
    StorageStats,
)
from otpagent.storage import sqlrules
from otpagent.storage.rows import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    attempt_from_row,
    attempt_to_row,
    event_from_row,
    message_from_row,
    message_to_row,
    percentile,
    queued_event,
)
from otpagent.storage.sqlite_schema import migrate

__all__ = ["SqliteStorage", "create_sqlite_storage"]

_T = TypeVar("_T")

IDEMPOTENCY_WINDOW = 24 * 3600.0
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in MESSAGE_COLUMNS)})"
)
_INSERT_ATTEMPT = (
    f"INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in ATTEMPT_COLUMNS)})"
)
_CLAIMABLE = tuple(s.value for s in CLAIMABLE_STATUSES)
# The statuses are literals, not parameters: only then can SQLite prove the query matches the
# partial index and walk it in claim order, stopping at LIMIT, whatever the queue's size.
_CLAIMABLE_SQL = "'queued', 'scheduled', 'retrying'"  # exactly as in the messages_ready index
assert set(_CLAIMABLE) == {"queued", "scheduled", "retrying"}
_READY = (f"SELECT * FROM messages INDEXED BY messages_ready WHERE status IN ({_CLAIMABLE_SQL}) "
          "AND due_at <= ? ORDER BY priority DESC, due_at, seq LIMIT ?")


def create_sqlite_storage(settings: Mapping[str, Any], context: PluginContext) -> SqliteStorage:
    """Factory registered as ``sqlite``: ``{"backend": "sqlite", "path": ..., "synchronous": ...}``."""
    for key in settings:
        if key not in ("backend", "path", "synchronous", "busy_timeout_seconds"):
            raise ConfigError(f"storage.{key}", "unknown key (expected path, synchronous, busy_timeout_seconds)")
    raw_path = settings.get("path", "otpagent.db")
    if not isinstance(raw_path, str) or not raw_path:
        raise ConfigError("storage.path", "must be a file path (or ':memory:' is not supported: use a file)")
    path = Path(raw_path)
    if not path.is_absolute():
        path = Path(context.config_dir) / path
    sync = settings.get("synchronous", "full")
    if sync not in ("full", "normal"):
        raise ConfigError("storage.synchronous", f"must be 'full' or 'normal', got {sync!r}")
    timeout = settings.get("busy_timeout_seconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError("storage.busy_timeout_seconds", "must be a positive number")
    return SqliteStorage(path, synchronous=sync, busy_timeout=float(timeout))


class SqliteStorage:
    """A :class:`~otpagent.protocols.StorageBackend` on one SQLite file."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "full", busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._pending: list[_PendingWrite[Any]] = []
        self._pending_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            migrate(self._conn(), begin=self._begin_immediate)
        except sqlite3.Error as exc:
            raise ConfigError("storage.path", f"cannot open SQLite database {str(self.path)!r}: {exc}") from None

    # -- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("storage is closed")
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA temp_store=MEMORY")  # savepoints' statement journals stay in memory
            # From now on a short built-in busy timeout covers rare reader waits; writers wait in
            # _begin_immediate's loop, which polls often and fairly instead of SQLite's 1..100 ms
            # sleep ladder (under which two busy processes starve each other).
            conn.execute("PRAGMA busy_timeout = 5")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            self._begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _grouped(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in a write transaction shared with every other thread's queued work.

        Group commit: each caller queues its work, then takes the write lock; whoever gets it
        first runs every queued piece, each under its own savepoint, and commits them together,
        so concurrent callers (API requests, workers recording outcomes, the claimer) share one
        fsync instead of queueing for one each. A piece that raises is rolled back alone and
        its caller gets the exception; a failed commit fails every piece of the group.
        """
        op: _PendingWrite[_T] = _PendingWrite(work)
        with self._pending_lock:
            self._pending.append(op)
        conn = self._conn()
        with self._write_lock:
            if not op.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_group(conn, batch)
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]  # set whenever error is None

    def _commit_group(self, conn: sqlite3.Connection, batch: list[_PendingWrite[Any]]) -> None:
        try:
            self._begin_immediate(conn)
            try:
                if len(batch) == 1:  # alone: no savepoint (it costs a statement journal per page)
                    self._run_alone(conn, batch[0])
                    return
                for op in batch:
                    conn.execute("SAVEPOINT piece")
                    try:
                        op.result = op.work(conn)
                    except Exception as exc:  # only this piece is lost; its caller hears why
                        conn.execute("ROLLBACK TO piece")
                        op.error = exc
                    conn.execute("RELEASE piece")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            for op in batch:
                if op.error is None:
                    op.result = None
                    op.error = exc if isinstance(exc, Exception) else RuntimeError(
                        f"the write was abandoned: {type(exc).__name__} in the committing thread")
            if not isinstance(exc, Exception):
                raise
        finally:
            for op in batch:
                op.done = True

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, op: _PendingWrite[Any]) -> None:
        try:
            op.result = op.work(conn)
        except Exception as exc:
            conn.execute("ROLLBACK")
            op.error = exc
        else:
            conn.execute("COMMIT")

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Take the database write lock, waiting up to the busy timeout for other processes."""
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.0002
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.004)

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for conn in self._connections:
                with suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    def ping(self) -> None:
        self._conn().execute("SELECT 1").fetchone()

    # -- queue ---------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        return self._grouped(lambda conn: self._enqueue(conn, items, now))

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
                    if existing["created_at"] >= now - IDEMPOTENCY_WINDOW:
                        if existing["fingerprint"] != item.fingerprint:
                            raise IdempotencyConflict(m.idempotency_key, index)
                        results.append(EnqueueResult(message_id=existing["id"], created=False))
                        continue
                    # The key expired: free it for the new message.
                    conn.execute("UPDATE messages SET idempotency_key = NULL WHERE id = ?", (existing["id"],))
            fresh.append(item)
            results.append(EnqueueResult(message_id=m.id, created=True))
        conn.executemany(_INSERT_MESSAGE, [message_to_row(i.message, i.fingerprint) for i in fresh])
        conn.executemany(_INSERT_EVENT, [_event_row(queued_event(i.message, now)) for i in fresh])
        return results

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float) -> list[Message]:
        if limit <= 0:
            return []
        rows, lease_until = self._grouped(lambda conn: self._claim(conn, worker_id, limit, lease_seconds, now))
        return [_leased(message_from_row(r), worker_id, lease_until, now) for r in rows]

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        return self._grouped(lambda conn: conn.execute(
            "UPDATE messages SET lease_expires_at = ? WHERE status = 'sending' AND lease_owner = ?",
            (now + lease_seconds, worker_id)).rowcount)

    @staticmethod
    def _claim(conn: sqlite3.Connection, worker_id: str, limit: int, lease_seconds: float,
               now: float) -> tuple[list[Any], float]:
        # Two index-friendly queries (expired leases, ready messages), each up to ``limit``,
        # merged so that an expired lease never jumps ahead of higher-priority work.
        rows = conn.execute(
            "SELECT * FROM messages WHERE status = 'sending' AND lease_expires_at <= ? "
            "ORDER BY priority DESC, due_at, seq LIMIT ?",
            (now, limit),
        ).fetchall()
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

    def update_message(
        self, update: MessageUpdate, now: float, *, attempt: Attempt | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            if attempt is not None:
                conn.execute(_INSERT_ATTEMPT, attempt_to_row(attempt))
            applied = sqlrules.message_update(_Tx(conn), update, now)
            if applied:
                for event in events:
                    self._insert_event(conn, event)
            return applied

        return self._grouped(work)

    def get_message(self, message_id: str) -> Message | None:
        row = self._conn().execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return message_from_row(row) if row else None

    def get_attempts(self, message_id: str) -> list[Attempt]:
        rows = self._conn().execute(
            "SELECT * FROM delivery_reports WHERE message_id = ? ORDER BY number, id", (message_id,)
        ).fetchall()
        return [attempt_from_row(r) for r in rows]

    def get_events(self, message_id: str) -> list[Event]:
        rows = self._conn().execute("SELECT * FROM events WHERE message_id = ? ORDER BY id", (message_id,)).fetchall()
        return [event_from_row(r) for r in rows]

    def recent_messages(self, limit: int) -> list[Message]:
        rows = self._conn().execute("SELECT * FROM messages ORDER BY updated_at DESC, seq DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [message_from_row(r) for r in rows]

    def find_by_provider_id(self, provider_message_id: str) -> Attempt | None:
        row = self._conn().execute(
            "SELECT * FROM delivery_reports WHERE provider_message_id = ? ORDER BY id DESC LIMIT 1",
            (provider_message_id,),
        ).fetchone()
        return attempt_from_row(row) if row else None

    def set_attempt_delivery_status(
        self, provider_message_id: str, status: Status, allowed_from: frozenset[Status | None], now: float
    ) -> bool:
        return self._grouped(lambda conn: sqlrules.set_attempt_delivery_status(
            _Tx(conn), provider_message_id, status, allowed_from, now))

    # -- OTP -----------------------------------------------------------------------------------
    def issue_otp(
        self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int, now: float
    ) -> tuple[OtpIssueOutcome, float]:
        def work(conn: sqlite3.Connection) -> tuple[OtpIssueOutcome, float]:
            outcome = sqlrules.issue_otp(_Tx(conn), otp, cooldown_seconds=cooldown_seconds,
                                         max_per_hour=max_per_hour, now=now)
            if outcome[0] is OtpIssueOutcome.ISSUED:
                m = message.message
                conn.execute(_INSERT_MESSAGE, message_to_row(m, message.fingerprint))
                self._insert_event(conn, queued_event(m, now))
            return outcome

        return self._grouped(work)

    def verify_otp(
        self, recipient: str, purpose: str, candidate_hash: bytes, *, max_failures: int,
        lockout_seconds: float, now: float,
    ) -> OtpVerifyOutcome:
        return self._grouped(lambda conn: sqlrules.verify_otp(
            _Tx(conn), recipient, purpose, candidate_hash, max_failures=max_failures, lockout_seconds=lockout_seconds,
            now=now))

    # -- shared state --------------------------------------------------------------------------
    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        return self._grouped(lambda conn: sqlrules.acquire(_Tx(conn), key, interval, burst, now, cost, max_wait))

    def acquire_all(self, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
        return self._grouped(lambda conn: sqlrules.acquire_all(_Tx(conn), buckets, now))

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

    def remember_event_id(self, source: str, event_id: str, now: float) -> bool:
        return self._grouped(lambda conn: conn.execute(
            "INSERT INTO seen_events (source, event_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (source, event_id, now)).rowcount == 1)

    # -- metrics and housekeeping --------------------------------------------------------------
    def redact_expired_secrets(self, now: float) -> int:
        with self._write() as conn:
            return conn.execute("UPDATE messages SET secret = NULL WHERE secret IS NOT NULL AND expires_at < ?",
                                (now,)).rowcount

    def stats(self, now: float) -> StorageStats:
        conn = self._conn()
        by_status = {r[0]: r[1] for r in conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status")}
        queue_size = sum(by_status.get(s, 0) for s in (*_CLAIMABLE, "sending"))
        oldest = conn.execute(
            f"SELECT MIN(due_at) FROM messages WHERE status IN ({_CLAIMABLE_SQL}) AND due_at <= ?", (now,)
        ).fetchone()[0]
        channels: dict[str, ChannelStats] = {}
        since = now - STATS_WINDOW_SECONDS
        for r in conn.execute(
            "SELECT channel, COUNT(*) AS attempts, "
            "SUM(outcome = 'accepted') AS accepted, SUM(outcome = 'transient') AS transient, "
            "SUM(outcome = 'permanent') AS permanent, "
            "SUM(delivery_status IN ('delivered', 'read')) AS delivered, "
            "SUM(delivery_status IN ('undelivered', 'failed')) AS undelivered, SUM(cost) AS cost "
            "FROM delivery_reports WHERE finished_at >= ? GROUP BY channel", (since,)
        ):
            latencies = sorted(
                row[0] for row in conn.execute(
                    "SELECT (finished_at - started_at) * 1000.0 FROM delivery_reports WHERE channel = ? "
                    "AND finished_at >= ? ORDER BY id DESC LIMIT 1000", (r["channel"], since))
            )
            channels[r["channel"]] = ChannelStats(
                attempts=r["attempts"], accepted=r["accepted"] or 0, transient=r["transient"] or 0,
                permanent=r["permanent"] or 0, delivered=r["delivered"] or 0,
                undelivered=r["undelivered"] or 0, cost=r["cost"] or 0.0,
                p50_latency_ms=percentile(latencies, 0.50), p95_latency_ms=percentile(latencies, 0.95),
            )
        return StorageStats(
            total=sum(by_status.values()), queue_size=queue_size, by_status=by_status, channels=channels,
            oldest_due_age_seconds=None if oldest is None else max(0.0, now - oldest),
        )

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        finished = ("sent", "delivered", "read", "undelivered", "failed", "cancelled", "expired")
        marks = ",".join("?" * len(finished))
        counts: dict[str, int] = {}
        with self._write() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM doomed")
            conn.execute(f"INSERT INTO doomed SELECT id FROM messages WHERE status IN ({marks}) AND updated_at < ?",
                         (*finished, older_than))
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

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _insert_event(conn: sqlite3.Connection, event: Event) -> None:
        conn.execute(_INSERT_EVENT, _event_row(event))


_INSERT_EVENT = "INSERT INTO events (message_id, type, at, data) VALUES (?, ?, ?, ?)"


def _event_row(event: Event) -> tuple[Any, ...]:
    return event.message_id, event.type, event.at, json.dumps(dict(event.data)) if event.data else None


def _leased(m: Message, owner: str, until: float, now: float) -> Message:
    return attrs.evolve(m, status=Status.SENDING, lease_owner=owner, lease_expires_at=until, updated_at=now)


class _PendingWrite(Generic[_T]):
    """One thread's write waiting for the next group commit."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], _T]) -> None:
        self.work = work
        self.done = False
        self.result: _T | None = None
        self.error: BaseException | None = None


class _Tx:
    """:class:`~otpagent.storage.sqlrules.Tx` over a SQLite connection (``?`` is native)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount
