"""A value read from storage again every few seconds, without a message waiting for the read.

Routing reads two aggregates over the day's attempts: each channel's statistics
(``Housekeeping.stats``) and today's spend per channel (``Housekeeping.costs_by_day``, for
daily budgets). Both cost time that grows with the day's traffic (about 100 ms at 100,000
attempts on SQLite, 0.5 s at 500,000), so a message whose routing noticed the value was stale
used to wait that long to be sent. :class:`Refreshed` is stale-while-revalidate: only the very
first read is waited for (there is nothing to route with before it, and its error reaches the
caller); afterwards the value in hand is returned at once while one background thread reads
the next, and a failed read keeps the old value until the next interval, logged once a minute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from otpagent.logs import get_logger
from otpagent.logthrottle import LogThrottle

__all__ = ["Refreshed"]

log = get_logger("otpagent.routing")

T = TypeVar("T")


class Refreshed(Generic[T]):
    """``read(now)``'s result, read again once it is ``ttl`` seconds old. Thread-safe."""

    def __init__(self, name: str, read: Callable[[float], T], *, ttl: float, clock: Callable[[], float],
                 faults: LogThrottle) -> None:
        self.name = name
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._faults = faults
        self._current: tuple[float, T] | None = None  # (read at, value), replaced whole: read without a lock
        self._reading = threading.Lock()  # held by the one thread reading

    def get(self) -> T:
        """The value: fresh, or stale while a background thread reads the next one."""
        now = self._clock()
        current = self._current
        if current is not None and now - current[0] < self._ttl:
            return current[1]
        if current is None:  # the first read (or the first after forget()): everyone waits for it
            with self._reading:
                if self._current is None:
                    self._current = (now, self._read(now))
                return self._current[1]
        if self._reading.acquire(blocking=False):
            landed = self._current
            if landed is not None and now - landed[0] < self._ttl:  # another thread's read has just landed
                self._reading.release()
                return landed[1]
            try:
                threading.Thread(target=self._read_in_background, args=(now, current[1]),
                                 name=f"otpagent-{self.name}", daemon=True).start()
            except RuntimeError:  # no new threads (the interpreter is shutting down)
                self._reading.release()
        return current[1]

    def forget(self) -> None:
        """Read again before the value is next returned (that caller waits for the read)."""
        self._current = None

    def wait_for_read(self, timeout: float) -> bool:
        """Whether no read is in progress within ``timeout`` seconds (for tests and shutdown)."""
        if not self._reading.acquire(timeout=timeout):
            return False
        self._reading.release()
        return True

    def _read_in_background(self, now: float, old: T) -> None:
        """Holding the reading lock: read the value again; a failure keeps ``old`` until the
        next interval (not retried on every message while the database is away)."""
        try:
            self._current = (now, self._read(now))
        except Exception:
            self._current = (now, old)
            quiet = self._faults.allow(("storage", self.name))
            if quiet is not None:
                log.exception("route_data_read_failed", what=self.name, repeats_since_last_log=quiet)
        finally:
            self._reading.release()
