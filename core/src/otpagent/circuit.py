"""Per-channel circuit breakers, kept in shared storage so every worker sees the same state.

A channel whose provider says the *channel* is at fault (bad credentials, suspended account)
opens: routing skips it until ``open_seconds`` pass, then one probe is let through (half-open);
an accepted send closes it again, another channel-level failure re-opens it.
"""

from __future__ import annotations

import json
import threading

from otpagent.protocols import StorageBackend

__all__ = ["CircuitBreakers"]


class CircuitBreakers:
    """Reads are cached for ``cache_seconds`` to keep routing off the database's hot path."""

    def __init__(self, storage: StorageBackend, open_seconds: float = 60.0, cache_seconds: float = 1.0) -> None:
        self.storage = storage
        self.open_seconds = open_seconds
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, float]] = {}  # channel -> (read_at, open_until)
        self._lock = threading.Lock()

    def _open_until(self, channel: str, now: float) -> float:
        with self._lock:
            cached = self._cache.get(channel)
            if cached is not None and now - cached[0] < self.cache_seconds:
                return cached[1]
        raw = self.storage.get_state(f"circuit:{channel}")
        until = float(json.loads(raw).get("open_until", 0.0)) if raw else 0.0
        with self._lock:
            self._cache[channel] = (now, until)
        return until

    def state(self, channel: str, now: float) -> str:
        """``closed``, ``open`` or ``half_open``."""
        until = self._open_until(channel, now)
        if until == 0.0:
            return "closed"
        return "open" if now < until else "half_open"

    def is_open(self, channel: str, now: float) -> bool:
        return self.state(channel, now) == "open"

    def trip(self, channel: str, now: float, reason: str) -> None:
        until = now + self.open_seconds
        self.storage.put_state(f"circuit:{channel}", json.dumps({"open_until": until, "reason": reason}))
        with self._lock:
            self._cache[channel] = (now, until)

    def record_success(self, channel: str, now: float) -> None:
        if self._open_until(channel, now) != 0.0:
            self.storage.put_state(f"circuit:{channel}", json.dumps({"open_until": 0.0}))
            with self._lock:
                self._cache[channel] = (now, 0.0)
