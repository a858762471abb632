"""LISTEN/NOTIFY wake-ups: an idle worker sleeps until something is enqueued, not a poll tick.

One dedicated connection (outside the pool) listens; the thread that holds it waits for a
notification and wakes the others through a condition variable, so any number of dispatcher
threads can call :meth:`WorkListener.wait` at once. A lost connection is reopened on the next
wait; while it is down, waits simply time out and the dispatcher polls.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from otpagent_postgres.insert import NOTIFY_CHANNEL

__all__ = ["WorkListener"]


class WorkListener:
    """Blocks callers until a notification for ``schema`` arrives or their timeout passes."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], schema: str) -> None:
        self._connect = connect
        self._schema = schema
        self._conn: psycopg.Connection[Any] | None = None
        self._listening = threading.Lock()
        self._woken = threading.Condition()
        self._generation = 0
        self._closed = False

    def wait(self, timeout: float) -> None:
        """Return when work may have arrived, or after ``timeout`` seconds.

        One caller at a time listens on the connection; the others wait to be told. When the
        listener leaves without news for this schema (its own timeout, a lost connection), it
        says so, and a waiter that still has time left takes over the listening, so a
        notification never arrives with nobody reading it.
        """
        if self._closed or timeout <= 0:
            return
        deadline = time.monotonic() + timeout
        with self._woken:
            seen = self._generation
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._listening.acquire(blocking=False):
                try:
                    woke = self._generation == seen and self._listen(remaining)
                finally:
                    self._listening.release()
                with self._woken:
                    if woke:
                        self._generation += 1
                    self._woken.notify_all()  # the news, or "the listener left: take over"
                if woke or self._generation != seen:
                    return
                continue
            with self._woken:
                self._woken.wait(remaining)
                if self._generation != seen:
                    return

    def _listen(self, timeout: float) -> bool:
        """Listen until a notification for this schema (True) or ``timeout`` (False).

        The channel is shared by every schema on the server: another schema's notification is
        not news for us, and listening goes on.
        """
        deadline = time.monotonic() + timeout
        try:
            conn = self._ensure_connection()
            while (remaining := deadline - time.monotonic()) > 0:
                if any(note.payload == self._schema for note in conn.notifies(timeout=remaining, stop_after=1)):
                    # Drain what has already arrived, so one burst of enqueues means one wake-up;
                    # without waiting (timeout 0 reads only what is there): every millisecond
                    # spent here is a millisecond more before the message is sent.
                    for _note in conn.notifies(timeout=0):
                        pass
                    return True
            return False
        except psycopg.Error:
            self._drop_connection()
            # Do not spin while the database is away: sleep out the rest of the timeout.
            time.sleep(max(0.0, min(deadline - time.monotonic(), 1.0)))
            return False

    def _ensure_connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = self._connect()
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._closed = True
        with self._woken:
            self._woken.notify_all()
        if self._listening.acquire(timeout=5.0):
            try:
                self._drop_connection()
            finally:
                self._listening.release()
