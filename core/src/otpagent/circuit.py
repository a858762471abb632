"""Per-channel circuit breakers: detection per process, state shared by the whole fleet.

Each process watches its own outcomes (consecutive failures, error rate over a sliding window);
when its view trips, it opens the channel's circuit in shared storage, and every worker on every
machine skips that channel. After ``open_seconds`` one worker wins the right to probe
(half-open, decided atomically in storage); the probe's success closes the circuit for all,
its failure re-opens it. A failure the provider blames on the channel itself (bad credentials,
suspended account) opens the circuit at once.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from typing import Any

import attrs

from otpagent.model import Event
from otpagent.protocols import SharedState
from otpagent.settings import setting

__all__ = ["BreakerSettings", "CircuitBreakers"]


@attrs.frozen
class BreakerSettings:
    """When a channel's circuit opens (failures in a row, or an error rate) and for how long."""

    open_seconds: float = setting(60.0, gt=0)
    consecutive_failures: int = setting(5, ge=1)
    window: int = setting(20, ge=1)
    error_rate: float = setting(0.5, gt=0, le=1, reason="must be in (0, 1]")
    min_calls: int = setting(10, ge=1)
    probe_timeout_seconds: float = setting(30.0, gt=0)


def _decode(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {"state": "closed"}


class CircuitBreakers:
    """Shared reads are cached for ``cache_seconds`` to keep routing off the database."""

    def __init__(self, state: SharedState, settings: BreakerSettings | None = None, *,
                 cache_seconds: float = 0.5, on_change: Callable[[Event], None] | None = None,
                 worker_id: str = "") -> None:
        self.shared = state
        self.settings = settings or BreakerSettings()
        self.cache_seconds = cache_seconds
        self.on_change = on_change
        self.worker_id = worker_id
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._consecutive: dict[str, int] = collections.defaultdict(int)
        self._window: dict[str, collections.deque[bool]] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------
    def _shared(self, channel: str, now: float, fresh: bool = False) -> dict[str, Any]:
        # The cache holds immutable (time, state) pairs, read and replaced whole: a dict's get
        # and set are atomic, so every worker thread reads it (several times a message) without
        # taking a lock. Two threads refreshing at once both read the store; either answer is fine.
        cached = self._cache.get(channel)
        if cached is not None and not fresh and now - cached[0] < self.cache_seconds:
            return cached[1]
        value = _decode(self.shared.get_state(f"circuit:{channel}"))
        self._cache[channel] = (now, value)
        return value

    def _remember(self, channel: str, now: float, value: dict[str, Any]) -> None:
        self._cache[channel] = (now, value)

    def state(self, channel: str, now: float) -> str:
        """``closed``, ``open`` or ``half_open`` (open and due for a probe counts as half-open)."""
        shared = self._shared(channel, now)
        if shared["state"] == "open" and now >= shared["open_until"]:
            return "half_open"
        return str(shared["state"])

    def is_open(self, channel: str, now: float) -> bool:
        """True while routing should skip the channel (open, or a probe is already out)."""
        shared = self._shared(channel, now)
        if shared["state"] == "open":
            return bool(now < shared["open_until"])
        if shared["state"] == "half_open":
            return bool(now < shared.get("probe_until", 0.0) and shared.get("probe_owner") != self.worker_id)
        return False

    def allow(self, channel: str, now: float) -> bool:
        """May this worker send on the channel now? Claims the probe when one is due."""
        shared = self._shared(channel, now)
        if shared["state"] == "closed":
            return True
        if not self.is_open(channel, now) and shared.get("probe_owner") == self.worker_id:
            return True
        won: list[bool] = [False]

        def claim_probe(raw: str | None) -> str:
            current = _decode(raw)
            due = (current["state"] == "open" and now >= current["open_until"]) or (
                current["state"] == "half_open" and now >= current.get("probe_until", 0.0))
            won[0] = due
            if not due:
                return raw or json.dumps(current)
            return json.dumps({**current, "state": "half_open", "probe_owner": self.worker_id,
                               "probe_until": now + self.settings.probe_timeout_seconds})

        value = self.shared.update_state(f"circuit:{channel}", claim_probe)
        self._remember(channel, now, json.loads(value))
        return won[0]

    # -- recording -----------------------------------------------------------------------------
    def record(self, channel: str, ok: bool, now: float, *, channel_fault: bool = False, reason: str = "") -> None:
        """Feed one outcome. ``channel_fault``: the provider blames the channel (opens at once)."""
        with self._lock:
            window = self._window.setdefault(channel, collections.deque(maxlen=self.settings.window))
            window.append(ok)
            self._consecutive[channel] = 0 if ok else self._consecutive[channel] + 1
            consecutive = self._consecutive[channel]
            # Counted only when it can matter: a success never trips the breaker.
            failures = 0 if ok else window.count(False)
            calls = len(window)
        if ok:
            if self._shared(channel, now)["state"] != "closed":
                self._close(channel, now)
            return
        s = self.settings
        if channel_fault:
            self.trip(channel, now, reason or "the provider rejected the channel")
        elif consecutive >= s.consecutive_failures:
            self.trip(channel, now, f"{consecutive} consecutive failures")
        elif calls >= s.min_calls and failures / calls >= s.error_rate:
            self.trip(channel, now, f"error rate {failures}/{calls}")
        elif self._shared(channel, now)["state"] == "half_open":
            self.trip(channel, now, reason or "probe failed")

    def trip(self, channel: str, now: float, reason: str) -> None:
        value = {"state": "open", "open_until": now + self.settings.open_seconds, "reason": reason, "opened_at": now}
        self.shared.put_state(f"circuit:{channel}", json.dumps(value))
        self._remember(channel, now, value)
        with self._lock:
            self._consecutive[channel] = 0
            self._window.pop(channel, None)
        self._announce("circuit_opened", channel, now, reason)

    def _close(self, channel: str, now: float) -> None:
        value = {"state": "closed"}
        self.shared.put_state(f"circuit:{channel}", json.dumps(value))
        self._remember(channel, now, value)
        self._announce("circuit_closed", channel, now, "a send succeeded")

    def _announce(self, kind: str, channel: str, now: float, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(Event(type=kind, message_id=None, at=now, data={"channel": channel, "reason": reason}))
