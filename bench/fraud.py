"""Fraud guard simulation: an SMS-pumping attack mixed into normal OTP traffic.

On a simulated clock, legitimate users in five countries request codes (daily swing, hourly
noise, a 4x marketing surge in one country) and enter 70-90% of them after 5-120 s; from hour 2
an attacker pumps three prefixes (Uzbekistan, Latvia and a UK mobile range that real users
also have), ramping up over an hour, entering no code, and stops at hour 9. Every request goes
through the real :class:`~otpagent.fraud.FraudGuard` (``check``, then ``record_sent``;
``record_verified`` when the user enters the code) on the in-memory store, with the default
settings. Reported: the share of attack requests refused, and of legitimate ones.

Run alone: ``python -m bench.fraud [--hours H] [--seeds 1 2 3]``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from otpagent.errors import OtpHeld
from otpagent.fraud import FraudGuard, FraudGuardSettings
from otpagent.model import Event
from otpagent.testing import InMemoryStorage

__all__ = ["SEEDS", "Source", "main", "run", "simulate"]

HOUR = 3600.0
SEEDS = (11, 23, 37)
#: The prefixes the attacker pumps.
ATTACKED = ("+9989012", "+3712955", "+447911")


@attrs.frozen
class Source:
    """A stream of requests: numbers from ``make``, ``rate(t)`` per second, converting ``p``."""

    name: str
    attack: bool
    rate: Callable[[float], float]
    make: Callable[[random.Random], str]
    p: float


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _ranges(rng: random.Random, count: int, first: str, width: int) -> list[str]:
    return sorted({first + _digits(rng, width) for _ in range(count)})


def _swing(base: float, phase: float, noise: Sequence[float]) -> Callable[[float], float]:
    """``base`` per second with a daily swing of +-50% and an hourly noise factor."""
    return lambda t: base * (1 + 0.5 * math.sin(2 * math.pi * t / 86400 + phase)) * noise[int(t // HOUR)]


def _surge(rate: Callable[[float], float], start: float, stop: float, factor: float) -> Callable[[float], float]:
    return lambda t: rate(t) * (factor if start <= t < stop else 1.0)


def legit_sources(rng: random.Random, hours: float, scale: float) -> list[Source]:
    noise = [max(0.3, rng.gauss(1.0, 0.15)) for _ in range(int(hours) + 2)]
    gb = [*_ranges(rng, 60, "7", 3), "7911"]  # UK mobile ranges: real users share the attacked one
    us = [str(a) for a in rng.sample(range(201, 990), 40)]
    de = ["151", "152", "157", "159", "160", "162", "170", "171", "172", "176"]
    uz = ["9012", "9013", "9015", "9033", "9097", "9111", "9300", "9350", "9477", "9911"]
    specs: list[tuple[str, float, Callable[[random.Random], str]]] = [
        ("GB", 0.6, lambda r: f"+44{r.choice(gb)}{_digits(r, 6)}"),
        ("US", 0.8, lambda r: f"+1{r.choice(us)}{r.randrange(2, 10)}{_digits(r, 6)}"),
        ("DE", 0.3, lambda r: f"+49{r.choice(de)}{_digits(r, 8)}"),
        ("IN", 0.4, lambda r: f"+91{r.randrange(6, 10)}{_digits(r, 9)}"),
        ("UZ", 0.03, lambda r: f"+998{r.choice(uz)}{_digits(r, 5)}"),
    ]
    sources = []
    for name, base, make in specs:
        rate = _swing(base * scale, rng.uniform(0, 2 * math.pi), noise)
        if name == "US":  # a marketing push: 4x sign-ups for 45 minutes, converting as usual
            rate = _surge(rate, 5 * HOUR, 5.75 * HOUR, 4.0)
        sources.append(Source(name, False, rate, make, rng.uniform(0.70, 0.90)))
    return sources


def attack_sources(scale: float, start: float = 2 * HOUR, stop: float = 9 * HOUR) -> list[Source]:
    def ramp(peak: float) -> Callable[[float], float]:
        return lambda t: 0.0 if not start <= t < stop else peak * scale * min(1.0, (t - start) / HOUR)

    return [
        Source("attack +9989012", True, ramp(0.5), lambda r: f"+9989012{_digits(r, 5)}", 0.0),
        Source("attack +3712955", True, ramp(0.3), lambda r: f"+3712955{_digits(r, 4)}", 0.0),
        Source("attack +447911", True, ramp(0.2), lambda r: f"+447911{_digits(r, 6)}", 0.0),
    ]


def _arrivals(sources: Sequence[Source], hours: float, rng: random.Random) -> list[tuple[float, int]]:
    """Every request as ``(time, source index)``: Poisson arrivals, rate fixed within a second."""
    out = []
    for second in range(int(hours * HOUR)):
        for index, source in enumerate(sources):
            rate = source.rate(float(second))
            if rate <= 0:
                continue
            t = second + rng.expovariate(rate)
            while t < second + 1:
                out.append((t, index))
                t += rng.expovariate(rate)
    out.sort()
    return out


@attrs.define
class Tally:
    requests: int = 0
    refused: int = 0

    @property
    def share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0


def simulate(seed: int, *, hours: float = 12.0, scale: float = 1.0, attack: bool = True,
             settings: FraudGuardSettings | None = None) -> dict[str, Any]:
    """One run; returns the counts, the holds and the guard's events."""
    rng = random.Random(seed)
    sources = legit_sources(rng, hours, scale) + (attack_sources(scale) if attack else [])
    events: list[Event] = []
    guard = FraudGuard(InMemoryStorage(), settings or FraudGuardSettings(), on_event=events.append)
    tallies = {"attack": Tally(), "legit": Tally()}
    attacked = tuple(ATTACKED)
    elsewhere = 0  # legitimate requests refused outside the attacked prefixes: false alarms
    pending: list[tuple[float, str]] = []  # (time the user types the code, number)
    for t, index in _arrivals(sources, hours, rng):
        while pending and pending[0][0] <= t:
            at, number = heapq.heappop(pending)
            guard.record_verified(number, at)
        source = sources[index]
        number = source.make(rng)
        tally = tallies["attack" if source.attack else "legit"]
        tally.requests += 1
        try:
            guard.check(number, t)
        except OtpHeld:
            tally.refused += 1
            elsewhere += not source.attack and not number.startswith(attacked)
            continue
        guard.record_sent(number, t)
        if rng.random() < source.p:
            heapq.heappush(pending, (t + min(120.0, 5.0 + rng.lognormvariate(math.log(20.0), 0.6)), number))
    guard.flush(hours * HOUR)
    return {"seed": seed, "hours": hours, "attack": attack, "attack_requests": tallies["attack"].requests,
            "attack_blocked": tallies["attack"].share, "legit_requests": tallies["legit"].requests,
            "legit_blocked": tallies["legit"].share, "legit_refused": tallies["legit"].refused,
            "legit_refused_elsewhere": elsewhere,
            "holds": [(e.at, e.data["prefix"], bool(e.data.get("extended"))) for e in events
                      if e.type == "fraud_prefix_held"],
            "releases": [(e.at, e.data["prefix"]) for e in events if e.type == "fraud_prefix_released"]}


def run(*, hours: float = 12.0, seeds: Sequence[int] = SEEDS, scale: float = 1.0) -> list[dict[str, Any]]:
    """Each seed with the attack, then the first seed without it (false alarms on calm traffic)."""
    results = [simulate(seed, hours=hours, scale=scale) for seed in seeds]
    return [*results, simulate(seeds[0], hours=hours, scale=scale, attack=False)]


def verdicts(results: Sequence[dict[str, Any]]) -> list[tuple[str, bool]]:
    attacked = [r for r in results if r["attack"]]
    return [
        ("attack OTPs blocked >= 95% (every seed)", all(r["attack_blocked"] >= 0.95 for r in attacked)),
        ("legitimate OTPs blocked < 0.5% (every run)", all(r["legit_blocked"] < 0.005 for r in results)),
    ]


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| seed | attack | attack OTPs | blocked | legitimate OTPs | blocked | of them outside the attacked "
             "prefixes | prefixes held (first hold, h) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        first: dict[str, float] = {}
        for at, prefix, _extended in r["holds"]:
            first.setdefault(prefix, at)
        held = ", ".join(f"{p} ({at / HOUR:.2f})" for p, at in sorted(first.items(), key=lambda x: x[1])) or "none"
        lines.append(f"| {r['seed']} | {'yes' if r['attack'] else 'no'} | {r['attack_requests']:,} | "
                     f"{100 * r['attack_blocked']:.2f}% | {r['legit_requests']:,} | "
                     f"{100 * r['legit_blocked']:.3f}% ({r['legit_refused']}) | "
                     f"{r['legit_refused_elsewhere']} | {held} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fraud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args(argv)
    results = run(hours=args.hours, seeds=args.seeds)
    print(table(results))
    for what, ok in verdicts(results):
        print(f"{'PASS' if ok else 'MISS'}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
