"""At most one log line per key per interval, for faults that repeat on every message.

A broken plugin fails the same way on every call: a strategy that raises raises for each
message, a channel that returns garbage does so for each send. One line a minute that names
the plugin, says what is wrong and how many repeats were kept quiet tells an operator as much
as ten thousand identical tracebacks, without drowning everything else in the log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["LogThrottle"]


class LogThrottle:
    """Decides which occurrences of a repeating fault are logged. Thread-safe."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._quiet: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> int | None:
        """None when ``key`` was logged less than ``interval`` ago (this occurrence is counted
        instead); otherwise how many occurrences were kept quiet since the last line."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._quiet[key] = self._quiet.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._quiet.pop(key, 0)
