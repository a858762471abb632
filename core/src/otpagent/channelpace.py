"""How fast a channel may be used right now: its fleet-wide rate limit and provider-requested pauses.

Both live in shared storage, so they hold for every worker of a fleet: the rate limit is a GCRA
bucket per channel, and a provider's ``Retry-After`` pauses the channel for everyone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from otpagent.config import ChannelConfig
from otpagent.protocols import RateLimits, SharedState

__all__ = ["MAX_RESERVE", "ChannelPace"]

#: How far ahead a worker may reserve a rate-limited slot and wait for it rather than put the
#: message back: short enough to keep threads available, long enough that a busy fleet does not
#: stampede an empty bucket with claims that bounce.
MAX_RESERVE = 1.0


class ChannelPace:
    """Decides when the next send on a channel may go. Thread-safe."""

    def __init__(self, state: SharedState, rate_limits: RateLimits | None,
                 configs: Mapping[str, ChannelConfig]) -> None:
        self.state = state
        self.rate_limits = rate_limits
        self.configs = configs
        self._pauses: dict[str, tuple[float, float]] = {}  # channel -> (read at, paused until)
        self._lock = threading.Lock()

    def wait_before_send(self, channel_name: str, now: float) -> float:
        """Seconds before this send may go: within ``MAX_RESERVE`` the slot is ours (wait,
        then send); beyond it, nothing was taken (put the message back until then).
        """
        paused_until = self.paused_until(channel_name, now)
        if paused_until > now:
            return max(paused_until - now, MAX_RESERVE + 0.001)
        limit = self.configs[channel_name].rate_limit
        if limit is None:
            return 0.0
        assert self.rate_limits is not None, "checked when the agent was built (channels.<name>.rate_limit)"
        return self.rate_limits.acquire(f"channel:{channel_name}", 1.0 / limit.per_second, limit.burst, now,
                                        max_wait=MAX_RESERVE)

    def paused_until(self, channel_name: str, now: float) -> float:
        """A provider-requested pause of the channel (shared state, re-read every half second)."""
        with self._lock:
            cached = self._pauses.get(channel_name)
        if cached is not None and now - cached[0] < 0.5:
            return cached[1]
        raw = self.state.get_state(f"pause:{channel_name}")
        until = float(raw) if raw else 0.0
        with self._lock:
            self._pauses[channel_name] = (now, until)
        return until

    def pause(self, channel_name: str, until: float, now: float) -> None:
        """Pause the channel for the whole fleet (a provider asked us to back off)."""
        self.state.put_state(f"pause:{channel_name}", repr(until))
        with self._lock:
            self._pauses[channel_name] = (now, until)
