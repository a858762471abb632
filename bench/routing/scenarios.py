"""The scenarios: each a kind of trouble the ``adaptive`` strategy must handle, with its own seed.

Sizes are ``messages`` at ``rate`` messages per second of simulated time; ``scale`` in
:func:`scenarios` shrinks them (never below what the scenario needs to mean something; the
flapping provider keeps its 5-minute cycles and has fewer of them; late reports keep their full
size, as their failure must outlast the report delay).
"""

from __future__ import annotations

import attrs

from bench.routing.world import BASE_CHANNELS, Change, Scenario, SimChannel, Window

__all__ = ["SCENARIOS", "scenarios"]


def _silent_failure(rate: float, seed: int, messages: int) -> Scenario:
    return Scenario(
        name=f"silent-failure-{rate:g}", seed=seed, messages=messages, rate=rate,
        title=f"WhatsApp accepts every send but its reports say undelivered (2% delivered) for the middle "
              f"fifth of the run, at {rate:g} messages/s",
        changes=(Change("whatsapp", 0.4, 0.6, p=0.02),), failures=(Window("whatsapp", 0.4, 0.6),))


def flapping(seed: int, cycles: int = 6) -> Scenario:
    """Cycles of 5 minutes at 2 messages/s: down for the first half of each, healthy for the second."""
    period = 1 / cycles
    downs = tuple(Change("whatsapp", i * period, i * period + period / 2, p=0.02) for i in range(cycles))
    return Scenario(
        name="flapping", seed=seed, messages=600 * cycles, rate=2.0, flapping="whatsapp",
        title=f"WhatsApp is down (2% delivered) for 2.5 minutes, then healthy for 2.5 minutes, {cycles} times",
        changes=downs, failures=tuple(Window("whatsapp", c.start, c.end) for c in downs))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(name="countries", seed=101, messages=3000, rate=2.0, countries=(("GB", 0.6), ("IN", 0.4)),
             title="In India SMS-A delivers 70% and slowly (20 s median), WhatsApp 97%; in the UK the base truth",
             changes=(Change("sms-a", 0.0, 1.0, p=0.70, ttd=20.0, country="IN"),
                      Change("whatsapp", 0.0, 1.0, p=0.97, country="IN"))),
    Scenario(name="drift", seed=102, messages=3000, rate=2.0,
             title="WhatsApp drifts from 88% to 55% delivered over the run, SMS-B from 94% to 99%",
             changes=(Change("whatsapp", 0.0, 1.0, p=0.55, drift=True),
                      Change("sms-b", 0.0, 1.0, p=0.99, drift=True))),
    _silent_failure(1.0, 103, 1500),
    _silent_failure(5.0, 104, 4000),
    _silent_failure(20.0, 105, 12000),
    flapping(106),
    Scenario(name="price-change", seed=107, messages=3000, rate=2.0, reports_price=True,
             title="Halfway, WhatsApp's billed price rises from 0.0050 to 0.0095 (config still says 0.0050); "
                   "reports carry the price",
             changes=(Change("whatsapp", 0.5, 1.0, price=0.0095),)),
    Scenario(name="sparse-cold-start", seed=108, messages=300, rate=1 / 30,
             title="One message every 30 s from an empty store (2.5 hours)"),
    # Not scaled down: its failure (a fifth of the run) must outlast the 5-minute report delay,
    # or nobody could see it before it ends.
    Scenario(name="late-reports", seed=109, messages=3000, rate=2.0, report_delay=(120.0, 300.0), min_messages=3000,
             title="Every provider report arrives 2-5 minutes late (delivery itself is as usual); "
                   "WhatsApp fails (2%) for the middle fifth",
             changes=(Change("whatsapp", 0.4, 0.6, p=0.02),), failures=(Window("whatsapp", 0.4, 0.6),)),
    Scenario(name="channel-added", seed=110, messages=3000, rate=2.0,
             title="Halfway a new SMS provider appears: 0.0045, 95%, fast",
             channels=(*BASE_CHANNELS, SimChannel("sms-c", "sms", 0.0045, 0.95, 3.0, added_at=0.5))),
    Scenario(name="blackhole", seed=111, messages=4000, rate=5.0,
             title="WhatsApp accepts sends but neither delivers nor reports anything for the middle fifth, "
                   "at 5 messages/s",
             changes=(Change("whatsapp", 0.4, 0.6, p=0.0, silent=True),),
             failures=(Window("whatsapp", 0.4, 0.6),)),
)


def scenarios(scale: float = 1.0, names: tuple[str, ...] = ()) -> list[Scenario]:
    """The scenarios (those named, or all), ``messages`` scaled by ``scale``."""
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    return [flapping(s.seed, max(2, round(6 * scale))) if s.flapping else  # its minutes are what matter
            attrs.evolve(s, messages=max(s.min_messages, int(s.messages * scale))) for s in chosen]
