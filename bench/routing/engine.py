"""Runs one strategy through one scenario on a simulated clock, through the public API only.

Each message is planned when it arrives (``plan``); its route is tried in order. An attempt
costs the channel's true price at once; the send is accepted (``observe`` of a SENT outcome)
and the provider's report comes later (``observe`` of a callback outcome, with the time to
deliver from the provider's timestamp, the acceptance time and, when the scenario says so, the
billed price). An undelivered report moves the message to its next channel then, as the
dispatcher does. A message is delivered when the handset gets it before its deadline (OTP: the
code's 300 s lifetime; others 1 h). A silent provider reports nothing: that message is lost.

A message's fate on a channel (delivered or not, how fast, how late the report) is drawn from
its own seed (scenario, message, channel): every strategy meets the same luck, so differences
between them are their choices, not noise.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from bench.routing.world import COUNTRIES, Scenario, SimChannel
from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import ChannelInfo, ChannelStats, RouteOutcome, RoutingStrategy

__all__ = ["MIX", "Message", "Run", "SimClock", "simulate"]

MIX = ((MessageType.OTP, Priority.HIGH, 0.45), (MessageType.ALERT, Priority.CRITICAL, 0.05),
       (MessageType.NOTIFICATION, Priority.MEDIUM, 0.35), (MessageType.REMINDER, Priority.LOW, 0.15))
EMAIL_SHARE = 0.4
OTP_LIFETIME = 300.0
OTHER_DEADLINE = 3600.0
START = 1_000_000.0


class SimClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class Message:
    index: int
    at: float  # seconds into the run
    message_type: MessageType
    priority: Priority
    has_email: bool
    country: str

    @property
    def deadline(self) -> float:
        return self.at + (OTP_LIFETIME if self.message_type is MessageType.OTP else OTHER_DEADLINE)


@attrs.define
class Run:
    """What happened to every message, for :mod:`bench.routing.metrics`."""

    scenario: Scenario
    firsts: list[str | None] = attrs.Factory(list)
    candidates: list[frozenset[str]] = attrs.Factory(list)
    messages: list[Message] = attrs.Factory(list)
    delivered_at: dict[int, float] = attrs.Factory(dict)
    cost: float = 0.0


def make_messages(s: Scenario) -> list[Message]:
    rng = random.Random(s.seed)
    out = []
    for i in range(s.messages):
        roll, acc, chosen = rng.random(), 0.0, MIX[-1]
        for kind in MIX:
            acc += kind[2]
            if roll < acc:
                chosen = kind
                break
        country = rng.choices([c for c, _w in s.countries], [w for _c, w in s.countries])[0]
        out.append(Message(i, i / s.rate, chosen[0], chosen[1], rng.random() < EMAIL_SHARE, country))
    return out


def eligible(s: Scenario, m: Message, t: float) -> list[SimChannel]:
    return [c for c in s.channels if s.present(c, t) and not (c.kind == "email" and not m.has_email)
            and not (c.kind == "voice" and m.message_type is MessageType.OTP)]


class _Sim:
    def __init__(self, strategy: RoutingStrategy, s: Scenario, clock: SimClock) -> None:
        self.strategy, self.s, self.clock = strategy, s, clock
        self.run = Run(s)
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.stats: dict[str, list[int]] = {c.name: [0, 0, 0] for c in s.channels}  # attempts, reports, delivered
        self.by_name = {c.name: c for c in s.channels}

    def at(self, t: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (t, self.seq, action))

    def go(self) -> Run:
        for m in make_messages(self.s):
            self.at(m.at, functools.partial(self.arrive, m))
        while self.queue:
            t, _seq, action = heapq.heappop(self.queue)
            self.clock.now = START + t
            action()
        return self.run

    def arrive(self, m: Message) -> None:
        t = m.at
        chans = eligible(self.s, m, t)
        infos = [ChannelInfo(name=c.name, kind=c.kind, cost=c.cost, stats=self._stats(c.name)) for c in chans]
        envelope = Envelope(message_id=f"m{m.index}", message_type=m.message_type, priority=m.priority, body="x",
                            phone_number=COUNTRIES[m.country], email="a@example.com" if m.has_email else None,
                            expires_at=START + m.deadline if m.message_type is MessageType.OTP else None)
        route = self.strategy.plan(envelope, infos)
        self.run.messages.append(m)
        self.run.firsts.append(route[0] if route else None)
        self.run.candidates.append(frozenset(c.name for c in chans))
        self.attempt(m, list(route), 0, t)

    def _stats(self, name: str) -> ChannelStats:
        a, r, d = self.stats[name]
        return ChannelStats(attempts=a, accepted=a, delivered=d, undelivered=r - d)

    def attempt(self, m: Message, route: list[str], k: int, t: float) -> None:
        if k >= len(route) or t >= m.deadline:
            return
        channel = self.by_name[route[k]]
        truth = self.s.truth(channel, t, m.country)
        self.run.cost += truth.price
        self.stats[channel.name][0] += 1
        self.strategy.observe(RouteOutcome(message_id=f"m{m.index}", channel=channel.name, priority=m.priority,
                                           status=Status.SENT, country=m.country, latency_ms=200.0, cost=channel.cost))
        if truth.silent:
            return
        fate = random.Random(f"{self.s.seed}:{m.index}:{channel.name}")  # the same for every strategy
        delivered = fate.random() < truth.p
        ttd = truth.ttd * math.exp(fate.gauss(0.0, truth.spread))
        extra = fate.uniform(*self.s.report_delay)
        self.at(t + ttd + extra, lambda: self.report(m, route, k, channel, t, ttd, delivered, truth.price))

    def report(self, m: Message, route: list[str], k: int, channel: SimChannel, sent: float, ttd: float,
               delivered: bool, price: float) -> None:
        stats = self.stats[channel.name]
        stats[1] += 1
        stats[2] += int(delivered)
        self.strategy.observe(RouteOutcome(
            message_id=f"m{m.index}", channel=channel.name, priority=m.priority, country=m.country, callback=True,
            status=Status.DELIVERED if delivered else Status.UNDELIVERED, accepted_at=START + sent,
            time_to_deliver_ms=ttd * 1000.0 if delivered else None, cost=price if self.s.reports_price else 0.0))
        if delivered:
            if sent + ttd <= m.deadline:
                self.run.delivered_at[m.index] = sent + ttd
            return
        now = self.clock.now - START
        self.attempt(m, route, k + 1, now)


def simulate(strategy: Any, s: Scenario, clock: SimClock) -> Run:
    """Run ``strategy`` (anything with ``plan``/``observe``, on ``clock``) through ``s``."""
    return _Sim(strategy, s, clock).go()
