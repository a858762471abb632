"""The hidden truth of the routing simulation: channels, what changes when, and scenarios' shape.

A strategy never reads any of this; it sees outcomes only (an accepted send, then a provider
report, late, on a simulated clock). The oracle reads it all.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["BASE_CHANNELS", "COUNTRIES", "Change", "Scenario", "SimChannel", "Truth", "Window"]

#: z for the 90th percentile of a normal: the lognormal's q90 is ``median * exp(Z90 * spread)``.
Z90 = 1.2816
Z95 = 1.6449


@attrs.frozen
class SimChannel:
    name: str
    kind: str
    #: The configured price estimate (what ``ChannelInfo.cost`` says).
    cost: float
    p: float
    #: Median time from acceptance to the handset, in seconds (lognormal with ``spread``).
    ttd: float
    spread: float = 0.5
    #: The share of the run after which the channel exists (0: from the start).
    added_at: float = 0.0


@attrs.frozen
class Change:
    """Between ``start`` and ``end`` (shares of the run), in ``country`` (None: all) the channel's
    truth differs. ``drift``: ``p`` moves linearly from its base value at ``start`` to ``p`` at
    ``end``, and stays. ``silent``: the provider sends no report at all (and delivers nothing)."""

    channel: str
    start: float
    end: float
    p: float | None = None
    price: float | None = None
    ttd: float | None = None
    country: str | None = None
    drift: bool = False
    silent: bool = False

    def applies(self, frac: float, country: str) -> bool:
        if self.country is not None and self.country != country:
            return False
        return self.start <= frac < self.end or (self.drift and frac >= self.end)


@attrs.frozen
class Truth:
    p: float
    price: float
    ttd: float
    spread: float
    silent: bool = False

    @property
    def ttd_q90(self) -> float:
        return self.ttd * math.exp(Z90 * self.spread)

    def within(self, seconds: float) -> float:
        """The chance a delivery (or its report, without extra delay) takes at most ``seconds``."""
        if seconds <= 0:
            return 0.0
        return 0.5 * (1.0 + math.erf(math.log(seconds / self.ttd) / (self.spread * math.sqrt(2.0))))


@attrs.frozen
class Window:
    """A failure of ``channel`` from ``start`` to ``end`` (shares of the run), measured."""

    channel: str
    start: float
    end: float


BASE_CHANNELS = (
    SimChannel("sms-a", "sms", 0.0079, 0.96, 4.0),
    SimChannel("sms-b", "sms", 0.0095, 0.94, 5.0),
    SimChannel("whatsapp", "whatsapp", 0.0050, 0.88, 6.0),
    SimChannel("voice", "voice", 0.0130, 0.985, 25.0),
    SimChannel("email", "email", 0.0006, 0.55, 45.0, spread=0.6),
)

#: country -> a phone number there.
COUNTRIES = {"GB": "+447700900123", "IN": "+919876543210", "US": "+12025550123"}


@attrs.frozen
class Scenario:
    name: str
    title: str
    seed: int
    messages: int
    rate: float
    channels: tuple[SimChannel, ...] = BASE_CHANNELS
    countries: tuple[tuple[str, float], ...] = (("GB", 1.0),)
    changes: tuple[Change, ...] = ()
    #: Extra seconds (uniform between the two) before a provider's report arrives.
    report_delay: tuple[float, float] = (0.0, 0.0)
    #: Whether reports carry the billed price (Twilio's ``Price``).
    reports_price: bool = False
    failures: tuple[Window, ...] = ()
    flapping: str | None = None
    #: The fewest messages that keep the scenario meaningful when it is scaled down.
    min_messages: int = 200

    @property
    def duration(self) -> float:
        return self.messages / self.rate

    def truth(self, channel: SimChannel, t: float, country: str) -> Truth:
        frac = t / self.duration
        p, price, ttd, silent = channel.p, channel.cost, channel.ttd, False
        for c in self.changes:
            if c.channel != channel.name or not c.applies(frac, country):
                continue
            if c.p is not None:
                p = c.p if not c.drift else p + (c.p - p) * min(1.0, (frac - c.start) / (c.end - c.start))
            price = c.price if c.price is not None else price
            ttd = c.ttd if c.ttd is not None else ttd
            silent = silent or c.silent
        return Truth(p=p, price=price, ttd=ttd, spread=channel.spread, silent=silent)

    def present(self, channel: SimChannel, t: float) -> bool:
        return t >= channel.added_at * self.duration
