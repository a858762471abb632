"""otpagent on PostgreSQL beside PgQueuer and procrastinate, measured in the same run.

Each system processes the same number of pre-filled no-op jobs (otpagent: a message through
routing to the console channel with ``quiet: true`` and no sinks) with 1 and with 2 worker
processes; the clock runs from "go" (workers built and waiting) until every job ran and the
queue shows none unacknowledged. CPU per message is the worker processes' CPU plus the
server's CPU for their backends (``/proc/<pid>/stat`` of the backends found by
``application_name``). Enqueue is one per call and in batches of 100 from a fresh process.
Targets (issue 17): otpagent >= 1.0x PgQueuer at 1 and 2 processes and for both enqueues;
procrastinate is shown for information.
"""

from __future__ import annotations

from bench.common import Context, Row
from bench.peers.compare import Measured, describe, interleave, versus
from bench.peers.harness import Processing, enqueue_rate, processing

OURS = "otpagent-postgres"
TARGETED = "pgqueuer"
PEERS = (TARGETED, "procrastinate")
BATCH = 100


def rates(results: dict[str, Measured[Processing]]) -> dict[str, Measured[float]]:
    return {k: Measured(k, [r.rate for r in m.rounds], m.why_not) for k, m in results.items()}


def cpu(results: dict[str, Measured[Processing]]) -> dict[str, Measured[float]]:
    """Worker + server CPU µs per message, per round."""
    out: dict[str, Measured[float]] = {}
    for key, measured in results.items():
        totals = []
        for r in measured.rounds:
            worker, server = r.cpu_us()
            totals.append(worker + (server or 0.0))
        out[key] = Measured(key, totals, measured.why_not)
    return out


def split(measured: Measured[Processing]) -> str:
    """``worker X + server Y µs`` of the round with the least total CPU."""
    if not measured.ok:
        return ""
    worker, server = min((r.cpu_us() for r in measured.rounds), key=lambda ws: ws[0] + (ws[1] or 0.0))
    return f"worker {worker:,.0f} + server {server or 0:,.0f} µs"


def problems(results: dict[str, Measured[Processing]]) -> str:
    found = [f"{k}: {p}" for k, m in results.items() for r in m.rounds if (p := r.problems())]
    return "; ".join(found)


def processing_rows(ctx: Context, processes: int) -> list[Row]:
    count = ctx.pick(20_000, 300)
    budget = ctx.seconds(300, 90)
    results = interleave(ctx, [OURS, *PEERS], lambda key: processing(key, ctx, count, processes, budget),
                         ctx.pick(2, 1), once=("procrastinate",))
    speed = rates(results)
    label = "1 worker process" if processes == 1 else f"{processes} worker processes"
    rows = []
    for peer in PEERS:
        targeted = peer == TARGETED
        extra = problems({OURS: results[OURS], peer: results[peer]})
        if processes == 1:
            extra = "; ".join(filter(None, [describe(peer), extra]))
        rows.append(versus(f"PostgreSQL, {count:,} pre-filled, {label}: otpagent vs {peer}", "msg/s",
                           speed[OURS], speed[peer], target=">= 1.0x" if targeted else "",
                           goal=1.0 if targeted else None, extra=extra))
    if processes == 1:
        per_message = cpu(results)
        for peer in PEERS:
            rows.append(versus(f"PostgreSQL CPU per message (worker + server backends): otpagent vs {peer}",
                               "µs", per_message[OURS], per_message[peer], higher_is_better=False,
                               extra=f"otpagent {split(results[OURS])}; {peer} {split(results[peer])}"))
    return rows


def enqueue_rows(ctx: Context) -> list[Row]:
    rows = []
    for batch, count in ((1, ctx.pick(2000, 50)), (BATCH, ctx.pick(20_000, 300))):
        budget = ctx.seconds(15, 5)

        def measure(key: str, count: int = count, batch: int = batch, budget: float = budget) -> float:
            return enqueue_rate(key, ctx, count, batch, budget)

        results = interleave(ctx, [OURS, *PEERS], measure, ctx.rounds)
        how = "1 per call (send_message)" if batch == 1 else f"batches of {batch} (send_bulk_messages)"
        for peer in PEERS:
            targeted = peer == TARGETED
            rows.append(versus(f"PostgreSQL enqueue, {how}: otpagent vs {peer}", "msg/s", results[OURS],
                               results[peer], target=">= 1.0x" if targeted else "", goal=1.0 if targeted else None))
    return rows


def run(ctx: Context) -> list[Row]:
    return [*processing_rows(ctx, 1), *processing_rows(ctx, 2), *enqueue_rows(ctx)]
