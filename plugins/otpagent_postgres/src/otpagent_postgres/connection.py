"""The connection pool, and running one unit of work with bounded retries across connection loss.

Every storage operation is a function of a connection that runs in one transaction. When the
database goes away (a restart, a failover, ``pg_terminate_backend``) psycopg raises
``OperationalError``; the unit of work is then retried on a fresh connection with exponential
backoff until ``retry_seconds`` have passed, so a worker keeps the outcomes of its in-flight
sends and writes them once the database is back.

A failure *during* COMMIT leaves it unknown whether the transaction applied. Each operation
gets told so (``uncertain=True`` on the retry) and can check before redoing its work.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

__all__ = ["Database", "Work"]

T = TypeVar("T")
Conn = psycopg.Connection[dict[str, Any]]
#: ``work(conn, uncertain)``: ``uncertain`` is True when an earlier try may have committed.
Work = Callable[[Conn, bool], T]

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

    def open(self) -> None:
        """Open the pool, waiting until a first connection works (raises when it does not)."""
        self.pool.open(wait=True, timeout=self.connect_timeout)

    def connect(self, **overrides: Any) -> psycopg.Connection[Any]:
        """A dedicated connection outside the pool (migrations, LISTEN)."""
        kwargs = {**self._kwargs, **overrides}
        return psycopg.connect(self.dsn, **kwargs)

    def run(self, work: Work[T], *, one_statement: bool = False, pipelined: bool = False,
            uncertain: bool = False) -> T:
        """Run ``work`` in one transaction, retrying on connection loss with bounded backoff.

        With ``one_statement`` the work promises a single statement on a first try: it then runs
        in autocommit, so the statement is its own transaction and costs one round trip instead
        of three (BEGIN, the statement, COMMIT). A retry after an uncertain commit runs in a
        transaction as usual, since its checks take more than one statement.

        With ``pipelined`` the transaction runs in psycopg's pipeline mode: statements go out
        without waiting for each other's answers, and the client waits only where the work reads
        a result, and once for the rest with the COMMIT. An OTP issue (BEGIN, recipient lock,
        its recent codes, then five writes and COMMIT) then waits twice, not nine times. The
        work must not use a write's row count, which is not known until that sync.

        ``uncertain`` starts the work as a retry: an earlier attempt elsewhere (a group commit
        that failed in flight, see :mod:`otpagent_postgres.groupcommit`) may have committed.
        """
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

    @staticmethod
    def _autocommit(conn: Conn, work: Work[T]) -> T:
        conn.autocommit = True
        try:
            return work(conn, False)
        finally:
            if not conn.broken:
                conn.autocommit = False  # the pool hands it on expecting transactions

    def close(self) -> None:
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
