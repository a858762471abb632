"""Waking an idle worker when another process commits work to the same SQLite file, where the
wake-up pipe (:mod:`otpagent.storage.sqlite_wakepipe`) cannot be made: Windows, or a
filesystem without FIFOs.

SQLite has no notifications between processes, so an idle worker used to poll every 0.2 s and
a message enqueued by another process waited ~100 ms on average for it. ``PRAGMA data_version``
answers, on one connection, whether any *other* connection has committed since the last time it
was read; reading it touches only the WAL index in shared memory (microseconds, no I/O). So an
idle worker reads it every millisecond, backing off to a few milliseconds while nothing
happens, and when it moves, looks (a read on the primary key, no lock) whether a message was
added before waking the claimer, as PostgreSQL's NOTIFY announces enqueues: another worker's
outcome commits then cost a read, not a write-locked claim.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

__all__ = ["DataVersionWatch"]

#: How often an idle worker looks at ``data_version``: right after activity, and at most.
FIRST_INTERVAL = 0.001
MAX_INTERVAL = 0.004


class DataVersionWatch:
    """``wait_for_work`` for SQLite: returns when work may be due, or after ``timeout``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._local = threading.local()

    def mark(self) -> None:
        """Note, on this thread, the newest work there is, just before a claim looks for it: a
        wait that follows returns at once when anything was added since. Without it a message
        committed between the claim's look and the wait's first look went unseen until the
        timeout (an idle poll, 0.2 s) or until more work came."""
        try:
            self._local.seen = self._newest(self._connection())
        except sqlite3.Error:
            self._local.seen = None

    def wait_for_work(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen, self._local.seen = getattr(self._local, "seen", None), None
        try:
            conn = self._connection()
            version = self._version(conn)
            newest = self._newest(conn)
            if seen is not None and newest != seen:
                return  # added since the claim looked
            interval = FIRST_INTERVAL
            while (remaining := deadline - time.monotonic()) > 0:
                time.sleep(min(interval, remaining))
                now_version = self._version(conn)
                if now_version != version:
                    version = now_version
                    interval = FIRST_INTERVAL
                    if self._newest(conn) != newest:
                        return
                else:
                    interval = min(interval * 2, MAX_INTERVAL)
        except sqlite3.Error:
            # Never raise for a busy or closed database: the caller's poll carries on.
            time.sleep(max(0.0, min(deadline - time.monotonic(), 0.05)))

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    @staticmethod
    def _newest(conn: sqlite3.Connection) -> tuple[int, int]:
        """The newest message's sequence number and the newest intake row's (a lone enqueue
        waits there until a claim moves it: :mod:`otpagent.storage.sqlite_intake`); each the
        rowid, one step down a primary key."""
        row = conn.execute("SELECT (SELECT COALESCE(MAX(seq), 0) FROM messages), "
                           "(SELECT COALESCE(MAX(seq), 0) FROM intake)").fetchone()
        return int(row[0]), int(row[1])
