"""Figures of one run and the verdicts of one scenario against its targets."""

from __future__ import annotations

import math
from typing import Any

from bench.routing.engine import Run
from bench.routing.world import Z90, Z95
from otpagent.model import MessageType

__all__ = ["figures", "p95", "verdicts"]


def p95(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def failing_firsts(run: Run) -> int | None:
    """The most messages sent first to a failing channel after its failure could be seen, over
    the scenario's failures (None when it has none). "Could be seen": a tenth of the reports on
    sends made when it began could have arrived (the failure's start, plus the 10th percentile
    of the channel's time to deliver, plus the scenario's shortest extra report delay). For a
    silent failure (no reports at all) the evidence is a report that does not come, so it could
    be seen once 95% of the reports would have come (the 95th percentile, the longest extra)."""
    s = run.scenario
    if not s.failures:
        return None
    worst = 0
    for w in s.failures:
        channel = next(c for c in s.channels if c.name == w.channel)
        silent = any(c.silent and c.channel == w.channel and c.start == w.start for c in s.changes)
        seen = w.start * s.duration + (channel.ttd * math.exp(Z95 * channel.spread) + s.report_delay[1] if silent
                                       else channel.ttd * math.exp(-Z90 * channel.spread) + s.report_delay[0])
        end = w.end * s.duration
        count = sum(1 for m, first in zip(run.messages, run.firsts, strict=True)
                    if seen <= m.at < end and first == w.channel)
        worst = max(worst, count)
    return worst


def healthy_share(run: Run) -> float | None:
    """In the flapping channel's healthy phases: the share of messages it could carry that
    were routed to it first; None when the scenario has no flapping channel."""
    s = run.scenario
    if s.flapping is None:
        return None
    eligible = chosen = 0
    for m, first, cands in zip(run.messages, run.firsts, run.candidates, strict=True):
        frac = m.at / s.duration
        down = any(w.channel == s.flapping and w.start <= frac < w.end for w in s.failures)
        if down or s.flapping not in cands:
            continue
        eligible += 1
        chosen += first == s.flapping
    return chosen / eligible if eligible else None


def figures(run: Run) -> dict[str, Any]:
    delivered = len(run.delivered_at)
    otp_times = [run.delivered_at[m.index] - m.at for m in run.messages
                 if m.message_type is MessageType.OTP and m.index in run.delivered_at]
    return {
        "delivered_rate": delivered / max(1, len(run.messages)),
        "cost_per_delivered": run.cost / max(1, delivered),
        "otp_p95_seconds": p95(otp_times),
        "failing_firsts": failing_firsts(run),
        "healthy_share": healthy_share(run),
    }


def verdicts(by: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    """Each target of the scenario: (what, met) for adaptive against the oracle and priority."""
    a, o, p = by["adaptive"], by["oracle"], by["priority"]
    cost_ratio = a["cost_per_delivered"] / o["cost_per_delivered"]
    bound = 1.25 * o["otp_p95_seconds"] + 10
    out = [
        (f"cost per delivered <= 1.10x oracle ({cost_ratio:.3f}x)", cost_ratio <= 1.10),
        (f"delivered >= priority ({100 * a['delivered_rate']:.2f}% vs {100 * p['delivered_rate']:.2f}%)",
         a["delivered_rate"] >= p["delivered_rate"]),
        (f"OTP p95 <= 1.25x oracle + 10 s ({a['otp_p95_seconds']:.1f} s vs {bound:.1f} s)",
         a["otp_p95_seconds"] <= bound),
    ]
    if a["failing_firsts"] is not None:
        out.append((f"<= 50 messages first to the failing channel once visible ({a['failing_firsts']})",
                    a["failing_firsts"] <= 50))
    if a["healthy_share"] is not None:
        out.append((f"healthy-phase share >= half the oracle's ({100 * a['healthy_share']:.1f}% vs "
                    f"{100 * o['healthy_share']:.1f}%)", a["healthy_share"] >= 0.5 * o["healthy_share"]))
    return out
