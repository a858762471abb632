"""``quiet-hours``: a routing strategy that keeps phones quiet at night.

Between ``start_hour`` and ``end_hour`` (in ``utc_offset_hours``), messages below CRITICAL avoid
the channels that ring or buzz (voice, then SMS): email and WhatsApp go first. Outside those
hours, and always for CRITICAL, it defers to the built-in ``priority`` map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from otpagent.hookspecs import hookimpl
from otpagent.model import Envelope, Priority
from otpagent.protocols import ChannelInfo, PluginContext, RouteOutcome
from otpagent.registration import RegisterRoutingStrategy
from otpagent.routing.priority import PriorityStrategy
from otpagent.settings import describes, setting, structure

__all__ = ["QuietHoursSettings", "QuietHoursStrategy"]

#: Kinds in order of how much they disturb: quiet first.
_QUIET_ORDER = {"email": 0, "whatsapp": 1, "sms": 2, "voice": 3}


class QuietHoursStrategy:
    def __init__(self, *, start_hour: int, end_hour: int, utc_offset_hours: float,
                 clock: Callable[[], float]) -> None:
        self.start_hour = start_hour
        self.end_hour = end_hour
        self.utc_offset_hours = utc_offset_hours
        self.clock = clock
        self._daytime = PriorityStrategy(load_balance=False)

    def is_quiet(self) -> bool:
        hour = ((self.clock() / 3600.0) + self.utc_offset_hours) % 24
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour  # spans midnight

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        daytime = self._daytime.plan(envelope, candidates)
        if envelope.priority is Priority.CRITICAL or not self.is_quiet():
            return daytime
        # Stable sort: within one kind, keep the priority map's order.
        return sorted(daytime, key=lambda name: _QUIET_ORDER.get(_kind(name, candidates), 9))

    def observe(self, outcome: RouteOutcome) -> None:
        """Nothing to learn. (A learning strategy would read ``outcome.status``, and on provider
        reports ``outcome.time_to_deliver_ms``, ``outcome.accepted_at`` and the billed
        ``outcome.cost``: see docs/plugins.md.)"""


def _kind(name: str, candidates: Sequence[ChannelInfo]) -> str:
    return next(c.kind for c in candidates if c.name == name)


@attrs.frozen
class QuietHoursSettings:
    """``routing`` for ``quiet-hours``: when phones stay quiet."""

    strategy: str = setting("quiet-hours")
    start_hour: int = setting(22, ge=0, le=23, doc="Hour the quiet starts (local)")
    end_hour: int = setting(7, ge=0, le=23, doc="Hour the quiet ends (local)")
    utc_offset_hours: float = setting(0.0, ge=-12, le=14, doc="Local time's offset from UTC")


@describes(QuietHoursSettings)  # publishes the keys in `otpagent config schema`
def create_quiet_hours(settings: Mapping[str, Any], context: PluginContext) -> QuietHoursStrategy:
    # Unknown keys, wrong types and out-of-range hours are all named at once (routing.start_hour...).
    s = structure(QuietHoursSettings, settings, path="routing")
    return QuietHoursStrategy(start_hour=s.start_hour, end_hour=s.end_hour, utc_offset_hours=s.utc_offset_hours,
                              clock=context.clock)


@hookimpl
def otpagent_register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    register("quiet-hours", create_quiet_hours)
