"""The oracle: knows the hidden truth at every moment and orders by the same rules as adaptive.

Same rules: :func:`otpagent.routing.adaptive_ordering.order` with the true delivery probability,
the true billed price, the true 90th-percentile time to deliver and the true chances of
reaching the reader in time, so it obeys the OTP patience bound and the code's lifetime exactly
as adaptive must. It never explores.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.routing.engine import START, SimClock
from bench.routing.world import COUNTRIES, Scenario, Truth
from otpagent.model import Envelope, MessageType, Priority
from otpagent.protocols import ChannelInfo, RouteOutcome
from otpagent.routing.adaptive import AdaptiveSettings
from otpagent.routing.adaptive_ordering import Choice, Timing, in_time, order

__all__ = ["Oracle"]

_COUNTRY_OF = {phone: country for country, phone in COUNTRIES.items()}


class Oracle:
    def __init__(self, scenario: Scenario, clock: SimClock, patience: float | None = None) -> None:
        self.scenario = scenario
        self.clock = clock
        self.patience = patience if patience is not None else AdaptiveSettings().otp_deliver_within_seconds
        self.by_name = {c.name: c for c in scenario.channels}

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        t = self.clock.now - START
        country = _COUNTRY_OF.get(envelope.phone_number or "", "GB")
        truths = [self.scenario.truth(self.by_name[c.name], t, country) for c in candidates]
        otp = envelope.message_type is MessageType.OTP
        timely = in_time([self._timing(truth) for truth in truths]) if otp else [None] * len(truths)
        choices = [Choice(name=c.name, p=truth.p, price=truth.price, ttd=truth.ttd_q90, in_time=chance)
                   for c, truth, chance in zip(candidates, truths, timely, strict=True)]
        lifetime = envelope.expires_at - self.clock.now if otp and envelope.expires_at is not None else None
        return [c.name for c in order(choices, critical=envelope.priority is Priority.CRITICAL,
                                      patience=self.patience if otp else None, lifetime=lifetime)]

    def _timing(self, truth: Truth) -> Timing:
        """The true chances (lognormal time to deliver; reports later by the scenario's delay)."""
        half = self.patience / 2
        low, high = self.scenario.report_delay
        extras = [low + (high - low) * (i + 0.5) / 20 for i in range(20)]
        reported = sum(truth.within(half - extra) for extra in extras) / len(extras)
        return Timing(p=truth.p, within=truth.within(self.patience), within_half=truth.within(half),
                      reported_half=reported)

    def observe(self, outcome: RouteOutcome) -> None:
        """It knows already."""
