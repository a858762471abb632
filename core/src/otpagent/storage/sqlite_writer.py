"""The SQLite write path: a connection per thread, and group commit of concurrent writes.

Every write runs in a ``BEGIN IMMEDIATE`` transaction, so it is atomic across threads *and*
processes. Writers queue before asking SQLite, because SQLite's own busy handler sleeps in
coarse steps: within a process on a lock, across processes on a lock file beside the database
(:mod:`~otpagent.storage.sqlite_filelock`). Short writes from concurrent threads are
group-committed: each under its own savepoint, all in one transaction, so they share one fsync
(:meth:`SqliteWriter._grouped`). :class:`~otpagent.storage.sqlite.SqliteStorage` builds on it.
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Generic, TypeVar

from otpagent.storage import gathering
from otpagent.storage.batching import CommitQueue, as_exception
from otpagent.storage.sqlite_filelock import WriterFileLock

__all__ = ["DEFAULT_PAGE_SIZE", "PAGE_SIZES", "SqliteTx", "SqliteWriter"]

_T = TypeVar("_T")

#: The page size of a new database. Every commit writes each page it touched to the WAL as one
#: frame and syncs them: an enqueue touches about eight pages (the row, its indexes, its event),
#: and with SQLite's default of 4096 bytes a commit synced 33 KB for a message of a few hundred.
#: At 2048 one-at-a-time enqueues ran about 15% faster (fewer blocks per fsync) and draining the
#: queue about 2% slower (more pages per claim); 1024 gained a little more and lost more, and
#: overflows rows of a long body. See docs/benchmarks.md.
DEFAULT_PAGE_SIZE = 2048
PAGE_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
#: The ``synchronous`` levels at which a commit waits for the disk (which a claim need not).
_SYNCED = frozenset({"FULL", "EXTRA"})


class SqliteWriter:
    """Connections and transactions on one SQLite file in WAL mode."""

    #: Its enqueues, OTP and rate-limit writes park in a gathered call (:mod:`~otpagent.storage.gathering`).
    gathers_writes = True

    def __init__(self, path: str | Path, *, synchronous: str = "full", busy_timeout: float = 30.0,
                 page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._page_size = int(page_size)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._write_lock = threading.Lock()
        #: Queues this file's writers across processes (see :mod:`~otpagent.storage.sqlite_filelock`).
        self._file_lock = WriterFileLock(self.path, busy_timeout)
        #: Concurrent short writes, committed in groups (see :meth:`_grouped`).
        self._writes: CommitQueue[_PendingWrite[Any]] = CommitQueue(self._commit_leading)
        #: Every thread's connection, with the thread that opened it (and alone uses it).
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for reads outside a transaction (writes go through
        :meth:`transaction`)."""
        return self._conn()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("storage is closed")
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            # Two processes opening a new database at once can meet here, and SQLite answers the
            # loser "database is locked" at once rather than calling its busy handler (a reader
            # that would have to wait for a writer could deadlock), so the wait is ours.
            # The page size takes effect only while the file is still empty, so before WAL mode
            # writes the header; an existing database keeps its own.
            conn.execute(f"PRAGMA page_size={self._page_size}")
            self._execute_waiting(conn, "PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.synchronous = self._synchronous  # see _use_synchronous
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA temp_store=MEMORY")  # savepoints' statement journals stay in memory
            if not conn.execute("PRAGMA secure_delete").fetchone()[0]:
                # Cleared values (an OTP's sealed code, data moved out of the store) are zeroed in
                # the pages being written anyway, at no extra I/O; builds that default to ON keep it.
                conn.execute("PRAGMA secure_delete = FAST")
            # From now on a short built-in busy timeout covers rare reader waits; writers wait in
            # _begin_immediate's loop, which polls often and fairly instead of SQLite's 1..100 ms
            # sleep ladder (under which two busy processes starve each other).
            conn.execute("PRAGMA busy_timeout = 5")
            _ensure_floor(conn)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append((threading.current_thread(), conn))
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside ``BEGIN IMMEDIATE`` (the database's write lock,
        across processes), committed when the block ends and rolled back when it raises.

        For writes of more than one statement that must be atomic (the webhook outbox). It is
        not group-committed: short, frequent writes go through the backend's own methods.
        """
        conn = self._conn()
        with self._write_lock, self._file_lock.held():
            self._use_synchronous(conn, durable=True)
            self._begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            gathering.forget_reads()

    def _grouped(self, work: Callable[[sqlite3.Connection], _T], *, gather: bool = False, durable: bool = True) -> _T:
        """Run ``work`` in a write transaction shared with every other thread's queued work.

        Group commit (:class:`~otpagent.storage.batching.CommitQueue`): each caller queues its
        work; the leader runs every queued piece, each under its own savepoint, and commits them together,
        so concurrent callers (API requests, workers recording outcomes, the claimer) share one
        fsync instead of queueing for one each. A piece that raises is rolled back alone and
        its caller gets the exception; a failed commit fails every piece of the group.

        ``gather``: inside a gathered call (:mod:`~otpagent.storage.gathering`), wait for the
        batch's other writes and commit with them. Only for writes nobody makes holding a lock.

        ``durable=False``: a write whose loss to a power cut would be undone anyway (a claim:
        lost, its messages are claimed again, as when its worker dies). A group of nothing else
        commits without waiting for the disk (``synchronous=NORMAL`` for that commit); the next
        durable commit's sync covers it, the write-ahead log being written in order.
        """
        if gather and gathering.active():
            result: _T = gathering.park(self, self._outcomes, work)
            return result
        op: _PendingWrite[_T] = _PendingWrite(work, durable)
        self._writes.run(op)
        gathering.forget_reads()  # a gathered call's write that did not park: reads may differ now
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[return-value]  # set whenever error is None

    def _grouped_each(self, works: Sequence[Callable[[sqlite3.Connection], _T]]) -> list[_T | Exception]:
        """Run each of ``works`` as :meth:`_grouped` runs one, all queued at once (so committed
        in one group): each one's result, or the exception that rolled back that one alone."""
        return [value if ok else as_exception(value) for ok, value in self._outcomes(works)]

    def _outcomes(self, works: Sequence[Callable[[sqlite3.Connection], Any]]) -> list[gathering.Outcome]:
        """Each of ``works`` committed in one group, as :meth:`_grouped_each`, as outcomes."""
        ops = [_PendingWrite(work) for work in works]
        self._writes.run_many(ops)
        return [(True, op.result) if op.error is None else (False, op.error) for op in ops]

    def _commit_leading(self, batch: list[_PendingWrite[Any]]) -> None:
        """Commit ``batch`` on the leading thread's connection, under the process's write lock
        (which :meth:`transaction` takes too). Without a connection (the storage was closed)
        every write of the group fails with that reason, not only the leader's."""
        try:
            conn = self._conn()
        except Exception as exc:
            for op in batch:
                op.error = exc
            return
        with self._write_lock:
            self._commit_group(conn, batch)

    def _commit_group(self, conn: sqlite3.Connection, batch: list[_PendingWrite[Any]]) -> None:
        try:
            held = self._file_lock.acquire()
            try:
                self._use_synchronous(conn, durable=any(op.durable for op in batch))
                self._begin_immediate(conn)
                try:
                    if len(batch) == 1:  # alone: no savepoint (it costs a statement journal per page)
                        self._run_alone(conn, batch[0])
                        return
                    self._run_pieces(conn, batch)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                self._file_lock.release(held)
        except BaseException as exc:
            for op in batch:
                if op.error is None:
                    op.result = None
                    op.error = as_exception(exc)
            if not isinstance(exc, Exception):
                raise

    @staticmethod
    def _run_pieces(conn: sqlite3.Connection, batch: list[_PendingWrite[Any]]) -> None:
        """Each piece under its own savepoint: one that raises is rolled back alone."""
        for op in batch:
            conn.execute("SAVEPOINT piece")
            try:
                op.result = op.work(conn)
            except Exception as exc:  # only this piece is lost; its caller hears why
                conn.execute("ROLLBACK TO piece")
                op.error = exc
            conn.execute("RELEASE piece")

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, op: _PendingWrite[Any]) -> None:
        try:
            op.result = op.work(conn)
        except Exception as exc:
            conn.execute("ROLLBACK")
            op.error = exc
        else:
            conn.execute("COMMIT")

    def _use_synchronous(self, conn: sqlite3.Connection, *, durable: bool) -> None:
        """Before a write transaction on this thread's ``conn``: the configured ``synchronous``
        for a durable one, ``NORMAL`` (no wait for the disk) for one that need not be (see
        :meth:`_grouped`). Set outside the transaction, as SQLite requires, and only on a change."""
        level = self._synchronous if durable or self._synchronous not in _SYNCED else "NORMAL"
        if getattr(self._local, "synchronous", self._synchronous) != level:
            conn.execute(f"PRAGMA synchronous={level}")
            self._local.synchronous = level

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """Take the database write lock, waiting up to the busy timeout for other processes."""
        self._execute_waiting(conn, "BEGIN IMMEDIATE")

    def _execute_waiting(self, conn: sqlite3.Connection, sql: str) -> None:
        """Run ``sql``, retrying "locked"/"busy" with short jittered pauses for up to the busy
        timeout: polls often and fairly, where SQLite's own 1..100 ms ladder starves a process."""
        deadline: float | None = None
        pause = 0.0002
        while True:
            try:
                conn.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                now = time.monotonic()
                if deadline is None:  # the clock is read only once there is a wait
                    deadline = now + self._busy_timeout
                elif now >= deadline:
                    raise
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.004)

    def close(self) -> None:
        self._closed = True
        here = threading.current_thread()
        with self._connections_lock:
            for owner, conn in self._connections:
                # Another thread that lives on may be inside a statement on its connection (a
                # routing-stats read in the background, an app thread's query): closing it
                # under that thread fails its read, or crashes the process when the statement
                # is mid-step. So only our references go: the connection closes once its thread
                # has let go of it and the collector frees it (it is in a reference cycle with
                # its statement cache).
                if owner is here or not owner.is_alive():
                    with suppress(sqlite3.Error):
                        conn.close()
            self._connections.clear()
        self._local = threading.local()
        # Not under a write still in flight (its end unlocks the file): then the descriptor
        # stays open until the process ends.
        if self._write_lock.acquire(blocking=False):
            try:
                self._file_lock.close()
            finally:
                self._write_lock.release()

    def ping(self) -> None:
        self._conn().execute("SELECT 1").fetchone()


class _PendingWrite(Generic[_T]):
    """One thread's write waiting for the next group commit."""

    __slots__ = ("durable", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], _T], durable: bool = True) -> None:
        self.work = work
        self.durable = durable
        self.result: _T | None = None
        self.error: BaseException | None = None


class SqliteTx:
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


def _ensure_floor(conn: sqlite3.Connection) -> None:
    """The shared SQL buckets time with ``FLOOR``, one of SQLite's math functions (3.35+); give
    a library built without them the same function."""
    try:
        conn.execute("SELECT FLOOR(1.5)")
    except sqlite3.OperationalError:
        conn.create_function("FLOOR", 1, lambda x: None if x is None else math.floor(x), deterministic=True)
