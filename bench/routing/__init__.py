"""Routing simulation: ``adaptive`` against ``priority`` and an oracle, scenario by scenario.

Each scenario (:mod:`bench.routing.scenarios`) hides a truth (:mod:`bench.routing.world`) the
strategies only see through outcomes, late, on a simulated clock (:mod:`bench.routing.engine`);
the oracle (:mod:`bench.routing.oracle`) knows it and follows the same rules. Per scenario, a
table of figures and the targets with pass/miss (:mod:`bench.routing.metrics`).

Run alone: ``python -m bench.routing [--scale S] [--scenario NAME ...] [--write-docs]``.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.routing.engine import SimClock, simulate
from bench.routing.metrics import figures, verdicts
from bench.routing.oracle import Oracle
from bench.routing.scenarios import scenarios
from bench.routing.world import Scenario
from otpagent.routing.adaptive import AdaptiveSettings, AdaptiveStrategy
from otpagent.routing.priority import PriorityStrategy
from otpagent.storage.sqlite import SqliteStorage

__all__ = ["STRATEGIES", "ScenarioResult", "run", "run_scenario", "summary", "table"]

STRATEGIES = ("priority", "adaptive", "oracle")

ScenarioResult = tuple[Scenario, dict[str, dict[str, Any]], list[tuple[str, bool]]]


def run_scenario(s: Scenario, workdir: Path) -> ScenarioResult:
    """Every strategy through ``s``; (scenario, figures by strategy, verdicts)."""
    by: dict[str, dict[str, Any]] = {}
    for name in STRATEGIES:
        clock = SimClock()
        storage = None
        strategy: Any
        if name == "adaptive":
            storage = SqliteStorage(workdir / f"{s.name}.db", synchronous="normal")
            strategy = AdaptiveStrategy(storage, AdaptiveSettings(seed=s.seed), clock=clock)
        elif name == "oracle":
            strategy = Oracle(s, clock)
        else:
            strategy = PriorityStrategy(rng=random.Random(s.seed))
        try:
            by[name] = figures(simulate(strategy, s, clock))
        finally:
            if storage is not None:
                storage.close()
    return s, by, verdicts(by)


def run(scale: float = 1.0, names: Sequence[str] = (),
        on_result: Callable[[ScenarioResult], None] | None = None) -> list[ScenarioResult]:
    out = []
    with tempfile.TemporaryDirectory(prefix="otpagent-routing-") as tmp:
        for s in scenarios(scale, tuple(names)):
            result = run_scenario(s, Path(tmp))
            if on_result is not None:
                on_result(result)
            out.append(result)
    return out


def _opt(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(result: ScenarioResult) -> str:
    s, by, checks = result
    lines = [f"**{s.name}** — {s.title}. {s.messages:,} messages at {s.rate:g}/s, seed {s.seed}.", "",
             "| strategy | delivered | cost per delivered | vs oracle | OTP p95 time to deliver "
             "| first to the failing channel once visible | healthy-phase first-choice share |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    oracle = by["oracle"]["cost_per_delivered"]
    for name, f in by.items():
        share = None if f["healthy_share"] is None else 100 * f["healthy_share"]
        lines.append(f"| {name} | {100 * f['delivered_rate']:.2f}% | {f['cost_per_delivered']:.5f} | "
                     f"{f['cost_per_delivered'] / oracle:.3f}x | {f['otp_p95_seconds']:.1f} s | "
                     f"{_opt(f['failing_firsts'], 'd')} | {_opt(share, '.1f')}{'%' if share is not None else ''} |")
    lines.append("")
    lines.extend(f"- {'PASS' if ok else 'MISS'}: {what}" for what, ok in checks)
    return "\n".join(lines)


def summary(results: Sequence[ScenarioResult]) -> str:
    """One line per scenario: adaptive against each target."""
    lines = ["| scenario | cost vs oracle (<= 1.10x) | delivered vs priority | OTP p95 vs bound "
             "| first to failing (<= 50) | healthy share vs half the oracle's | targets |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for s, by, checks in results:
        a, o, p = by["adaptive"], by["oracle"], by["priority"]
        bound = 1.25 * o["otp_p95_seconds"] + 10
        share = "—" if a["healthy_share"] is None else \
            f"{100 * a['healthy_share']:.1f}% vs {50 * o['healthy_share']:.1f}%"
        misses = sum(not ok for _w, ok in checks)
        lines.append(f"| {s.name} | {a['cost_per_delivered'] / o['cost_per_delivered']:.3f}x | "
                     f"{100 * a['delivered_rate']:.2f}% vs {100 * p['delivered_rate']:.2f}% | "
                     f"{a['otp_p95_seconds']:.1f} s vs {bound:.1f} s | {_opt(a['failing_firsts'], 'd')} | {share} | "
                     f"{'all met' if not misses else f'{misses} MISSED'} |")
    return "\n".join(lines)
