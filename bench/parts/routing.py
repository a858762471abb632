"""The routing simulation (``bench/routing.py``, written separately) as a part of the table.

It is optional: without ``bench.routing`` the part reports "not available". The simulation
returns one dict per strategy and its own verdicts; here they become rows: the cost per
delivered message of each strategy against the oracle's (the baseline), then each verdict.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from bench.common import Context, Row


def run(ctx: Context) -> list[Row]:
    if importlib.util.find_spec("bench.routing") is None:
        return [Row.unavailable("routing simulation", "", "", "bench/routing.py is not present")]
    sim = importlib.import_module("bench.routing")
    params = inspect.signature(sim.run).parameters
    messages = ctx.pick(3000, 300)
    results: Any = sim.run(messages=messages) if "messages" in params else sim.run(ctx)
    if not results or not isinstance(results[0], dict) or "strategy" not in results[0]:
        return list(results)  # already rows (or row-like objects) for the runner to adapt
    oracle = next((r for r in results if r["strategy"] == "oracle"), None)
    rows = []
    for r in results:
        if r["strategy"] == "oracle":
            continue
        rows.append(Row(f"routing sim ({messages:,} msgs), {r['strategy']}: cost per delivered",
                        r["cost_per_delivered"], "$/msg", "— (see verdicts)",
                        oracle["cost_per_delivered"] if oracle else None, "oracle", passed=None,
                        note=f"{r['strategy']}: {100 * r['delivered_rate']:.2f}% delivered, "
                             f"p95 {r['p95_seconds']:.0f} s, {r['outage_first_choices']} outage first choices"))
    verdicts = getattr(sim, "verdicts", None)
    for what, ok in (verdicts(results) if verdicts else []):
        rows.append(Row(f"routing: {what}", None, "", "verdict", passed=bool(ok)))
    return rows
