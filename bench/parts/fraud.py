"""The fraud guard simulation (``bench/fraud.py``) as rows: the share of attack OTPs blocked
(target >= 95%) and of legitimate ones (target < 0.5%), per seed, and on calm traffic."""

from __future__ import annotations

from bench import fraud as sim
from bench.common import Context, Row


def run(ctx: Context) -> list[Row]:
    hours = 4.0 if ctx.quick else 12.0
    seeds = sim.SEEDS[:1] if ctx.quick else sim.SEEDS
    rows = []
    for r in sim.run(hours=hours, seeds=seeds):
        label = f"fraud guard sim ({hours:g} h, seed {r['seed']}{'' if r['attack'] else ', no attack'})"
        held = ", ".join(sorted({prefix for _at, prefix, _extended in r["holds"]})) or "none"
        if r["attack"]:
            rows.append(Row(f"{label}: attack OTPs blocked", 100 * r["attack_blocked"], "%", ">= 95%",
                            passed=r["attack_blocked"] >= 0.95,
                            note=f"{r['attack_requests']:,} attack OTPs; held {held}"))
        rows.append(Row(f"{label}: legitimate OTPs blocked", 100 * r["legit_blocked"], "%", "< 0.5%",
                        passed=r["legit_blocked"] < 0.005, note=f"{r['legit_refused']} of {r['legit_requests']:,}"))
    return rows
