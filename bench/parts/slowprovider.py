"""Figure 5: 200 workers against a provider that takes 200 ms per request.

The ideal is 200 / 0.2 s = 1,000 msg/s; a Python process may not reach it, so the baseline
is the same fake driven by a bare pool of 200 SDK threads (the client ceiling). Target:
at least 90 % of min(1,000 msg/s, that ceiling).
"""

from __future__ import annotations

from bench.common import Context, Row
from bench.parts.provider import compare

WORKERS = 200
LATENCY = 0.2


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(2000, 200)
    workers = ctx.pick(WORKERS, 20)
    value, baseline, note = compare(ctx, "slow", LATENCY, workers, count, ctx.seconds(60, 15),
                                    1 if ctx.quick else 2)
    ideal = workers / LATENCY
    goal = 0.9 * min(ideal, baseline)
    ctx.say(f"slow provider: {value:,.0f} msg/s vs bare pool {baseline:,.0f} (ideal {ideal:,.0f})")
    return [Row(f"dispatch, 200 ms fake, {workers} workers", value, "msg/s",
                f">= 90% of min({ideal:,.0f}, raw) = {goal:,.0f}", baseline, f"SDK in {workers} bare threads",
                passed=value >= goal, note=note)]
