"""The routing simulation (:mod:`bench.routing`) as a part of the table.

One row per scenario: adaptive's cost per delivered message against the oracle's (the
baseline), noting its other figures; then one row per target with pass/miss.
"""

from __future__ import annotations

from bench import routing as simulation
from bench.common import Context, Row


def run(ctx: Context) -> list[Row]:
    rows = []
    for s, by, checks in simulation.run(scale=0.2 if ctx.quick else 1.0):
        a, o = by["adaptive"], by["oracle"]
        rows.append(Row(f"routing sim {s.name} ({s.messages:,} msgs): adaptive cost per delivered",
                        a["cost_per_delivered"], "$/msg", "<= 1.10x oracle", o["cost_per_delivered"], "oracle",
                        passed=None, note=f"{s.name}: {100 * a['delivered_rate']:.2f}% delivered, "
                                          f"OTP p95 {a['otp_p95_seconds']:.1f} s"))
        rows.extend(Row(f"routing {s.name}: {what}", None, "", "verdict", passed=ok) for what, ok in checks)
    return rows
