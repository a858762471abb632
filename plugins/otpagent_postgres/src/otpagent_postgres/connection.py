"""The connection pool, and running one unit of work with bounded retries across connection loss.

Every storage operation is a function of a connection that runs in one transaction. When the
database goes away (a restart, a failover, ``pg_terminate_backend``) psycopg raises
``OperationalError``; the unit of work is then retried on a fresh connection with exponential
backoff until ``retry_seconds`` have passed, so a worker keeps the outcomes of its in-flight
sends and writes them once the database is back.

A failure *during* COMMIT leaves it unknown whether the transaction applied. Each operation
gets told so (``uncertain=True`` on the retry) and can check before redoing its work.

Work of one statement (an enqueue, a group of outcomes, a claim, a rate-limit decision) runs in
autocommit on the *direct* connection when no other thread is using it: one connection outside
the pool, kept in autocommit, with a cursor kept for the group commit's statements. Taking a
pooled connection, switching it to autocommit and back, and making a cursor cost about as much
client CPU as the statement itself (about 90 of 200 µs for a one-message enqueue on the
benchmark machine); a thread that finds the direct connection busy takes the pool's path.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

__all__ = ["Database", "Work"]

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]
#: ``work(conn, uncertain)``: ``uncertain`` is True when an earlier try may have committed.
Work = Callable[[Conn, bool], T]
TupleCursor = psycopg.Cursor[tuple[Any, ...]]

log = logging.getLogger("otpagent_postgres")


class Database:
    """A psycopg pool bound to one schema, with retrying transactions."""

    def __init__(
        self, dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10, retry_seconds: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.retry_seconds = retry_seconds
        self.connect_timeout = connect_timeout
        self._kwargs: dict[str, Any] = {
            "autocommit": False,
            "row_factory": dict_row,
            "connect_timeout": max(1, int(connect_timeout)),
            "options": f"-c search_path={schema}",
            "application_name": f"otpagent:{schema}"[:63],
        }
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, kwargs=self._kwargs, open=False,
            timeout=connect_timeout, name="otpagent",
        )
        #: The direct connection (see the module's docstring): made on first use, replaced
        #: when it breaks, used by one thread at a time (whoever holds the lock).
        self._direct: Conn | None = None
        self._direct_until = 0.0  # renewed after the pool's own max_lifetime, as pooled ones are
        self._direct_cursor: TupleCursor | None = None
        self._direct_lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        """Open the pool, waiting until a first connection works (raises when it does not)."""
        self.pool.open(wait=True, timeout=self.connect_timeout)

    def connect(self, **overrides: Any) -> psycopg.Connection[Any]:
        """A dedicated connection outside the pool (migrations, LISTEN, the direct connection)."""
        kwargs = {**self._kwargs, **overrides}
        return psycopg.connect(self.dsn, **kwargs)

    def run(self, work: Work[T], *, one_statement: bool = False, pipelined: bool = False,
            uncertain: bool = False) -> T:
        """Run ``work`` in one transaction, retrying on connection loss with bounded backoff.

        With ``one_statement`` the work promises a single statement on a first try: it then runs
        in autocommit, so the statement is its own transaction and costs one round trip instead
        of three (BEGIN, the statement, COMMIT), on the direct connection when it is free. A
        retry after an uncertain commit runs in a transaction as usual, since its checks take
        more than one statement.

        With ``pipelined`` the transaction runs in psycopg's pipeline mode: statements go out
        without waiting for each other's answers, and the client waits only where the work reads
        a result, and once for the rest with the COMMIT. An OTP issue (BEGIN, recipient lock,
        its recent codes, then five writes and COMMIT) then waits twice, not nine times. The
        work must not use a write's row count, which is not known until that sync.

        ``uncertain`` starts the work as a retry: an earlier attempt elsewhere (a group commit
        that failed in flight, see :mod:`otpagent_postgres.groupcommit`) may have committed.
        """
        if one_statement and not uncertain and self._direct_lock.acquire(blocking=False):
            try:
                done, result, uncertain = self._run_direct(work)
            finally:
                self._direct_lock.release()
            if done:
                return cast(T, result)
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            committing = False
            try:
                # The pool's context rolls back on an exception and returns the connection
                # (or discards it when broken).
                with self.pool.connection() as conn:
                    if one_statement and not uncertain:
                        committing = True  # the statement commits as it runs
                        return self._autocommit(conn, work)
                    if pipelined:
                        with conn.pipeline():
                            result = work(conn, uncertain)
                            # The writes may still be in flight with the COMMIT: a loss from
                            # here on leaves the outcome unknown.
                            committing = True
                            conn.commit()
                        return result
                    result = work(conn, uncertain)
                    committing = True
                    conn.commit()
                    return result
            except psycopg.OperationalError as exc:
                uncertain = uncertain or committing
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable, retrying in %.2fs: %s", delay, type(exc).__name__)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 2.0)
                # Drop every idle connection that died meanwhile (a restart kills them all), so
                # the next try gets a fresh connection instead of failing once per stale one.
                with contextlib.suppress(Exception):
                    self.pool.check()

    def _run_direct(self, work: Work[T]) -> tuple[bool, T | None, bool]:
        """``work`` on the direct connection (the caller holds its lock): ``(True, result, _)``,
        or ``(False, None, uncertain)`` when the connection failed, for the pool's path to try
        again (``uncertain``: the statement may have committed before the failure). An error of
        the statement itself propagates, as on the pool's path."""
        conn = self._direct
        if conn is None or conn.closed or time.monotonic() > self._direct_until:  # closed: also when broken
            if self._closed:
                return False, None, False  # the pool's path says it is closed
            self._discard_direct()
            try:
                conn = self._direct = self.connect(autocommit=True)
            except psycopg.OperationalError:
                return False, None, False  # nothing was sent: the pool's path waits for the database
            self._direct_until = time.monotonic() + self.pool.max_lifetime
        try:
            return True, work(conn, False), False
        except psycopg.OperationalError as exc:
            # The statement may have applied: the pool's path checks before redoing it.
            self._discard_direct()
            log.warning("database connection lost during a statement, retrying: %s", type(exc).__name__)
            return False, None, True
        except Exception:  # the statement's own error: the connection stays (if it broke, it is
            raise  # closed, and the next run replaces it)
        except BaseException:  # interrupted mid-statement: the connection's state is unknown
            self._discard_direct()
            raise

    def _discard_direct(self) -> None:
        conn, self._direct, self._direct_cursor = self._direct, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def tuple_cursor(self, conn: Conn) -> TupleCursor:
        """A cursor of ``conn`` that returns tuples: on the direct connection the one kept for
        it (made once), elsewhere a new one. Use it for results read at once, inside the work."""
        if conn is self._direct:
            if self._direct_cursor is None:
                self._direct_cursor = conn.cursor(row_factory=tuple_row)
            return self._direct_cursor
        return conn.cursor(row_factory=tuple_row)

    @staticmethod
    def _autocommit(conn: Conn, work: Work[T]) -> T:
        conn.autocommit = True
        try:
            return work(conn, False)
        finally:
            if not conn.broken:
                conn.autocommit = False  # the pool hands it on expecting transactions

    def close(self) -> None:
        self._closed = True
        with self._direct_lock:
            self._discard_direct()
        self.pool.close()


class PgTx:
    """:class:`otpagent.storage.sqlrules.Tx` on an open psycopg transaction (``?`` -> ``%s``).

    The shared SQL never contains a literal ``?`` or ``%``, so the swap is exact.
    """

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self.conn.execute(sql.replace("?", "%s").encode(), params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.conn.execute(sql.replace("?", "%s").encode(), params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql.replace("?", "%s").encode(), params).rowcount
