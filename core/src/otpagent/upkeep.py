"""A dispatcher's upkeep thread: what must happen every few seconds whether or not work arrives.

It forgets OTP codes whose lifetime is over (so a copy of the database yields no live code),
renews this worker's place in the fleet's roster (and records the queue depth for the
dashboard), and runs the retention cleanup once per ``cleanup.interval_seconds``. A failure is
logged and tried again next round: upkeep never stops a dispatcher.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from otpagent.config import CleanupConfig
from otpagent.fleet import RENEW_SECONDS, FleetRoster
from otpagent.logs import get_logger
from otpagent.storage.capabilities import AgentCapabilities

__all__ = ["upkeep_loop"]

log = get_logger("otpagent.dispatcher")


def upkeep_loop(*, capabilities: AgentCapabilities, cleanup: CleanupConfig, roster: FleetRoster,
                clock: Callable[[], float], stopping: threading.Event) -> None:
    """Run until ``stopping`` is set (one round every :data:`~otpagent.fleet.RENEW_SECONDS`)."""
    next_cleanup = clock() + min(cleanup.interval_seconds, 60.0)
    while not stopping.wait(RENEW_SECONDS):
        now = clock()
        try:
            if capabilities.otp_store is not None:
                capabilities.otp_store.redact_expired_secrets(now)
            roster.tick(now, functools.partial(_queue_size, capabilities, now))
            if now >= next_cleanup:
                capabilities.housekeeping.cleanup(now - cleanup.retain_days * 86400.0, now)
                next_cleanup = now + cleanup.interval_seconds
        except Exception:
            log.exception("housekeeping_failed")


def _queue_size(capabilities: AgentCapabilities, now: float) -> int:
    return capabilities.housekeeping.stats(now).queue_size
