"""Latency across processes at a steady 200 jobs/s: enqueue in one process, work in another.

The way a web app uses a queue: its request threads enqueue, a separate worker process
(``otpagent run``, or the peer's worker) runs the jobs. Each job carries ``time.time()`` taken
just before its enqueue call; the worker notes when the job ran (peers: a line written by
the no-op job; otpagent: the console channel's outbox line, whose body carries the enqueue
time). Both clocks are the same machine's wall clock. Targets (issue 17): on SQLite p50 <= 10
ms and p99 <= 30 ms; on PostgreSQL p99 <= PgQueuer's. The other peers are for information.
"""

from __future__ import annotations

from bench.common import Context, Row, percentile
from bench.peers import load
from bench.peers.compare import Measured, interleave, versus
from bench.peers.harness import cross_latency

RATE = 200.0
#: (otpagent's backend, the peers shown beside it, the peer its target is judged against)
GROUPS = (("otpagent-sqlite", ("huey", "dramatiq", "celery"), None),
          ("otpagent-postgres", ("pgqueuer", "procrastinate"), "pgqueuer"))
SQLITE_TARGETS = {0.5: 10.0, 0.99: 30.0}


def quantiles(results: Measured[tuple[list[float], int]], q: float) -> Measured[float]:
    values = [percentile(lat, q) for lat, _ in results.rounds if lat]
    return Measured(results.key, values, results.why_not or ("" if values else "no job ran"))


def shortfall(results: Measured[tuple[list[float], int]]) -> str:
    notes = [f"{len(lat)}/{sent} jobs ran" for lat, sent in results.rounds if len(lat) < sent]
    return f"{load(results.key).name}: " + ", ".join(notes) if notes else ""


def summary(result: tuple[list[float], int]) -> str:
    latencies, sent = result
    if not latencies:
        return f"none of {sent} jobs ran"
    return (f"{len(latencies)}/{sent} ran, p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms")


def run(ctx: Context) -> list[Row]:
    seconds = ctx.seconds(10, 1)
    keys = [key for ours, peers, _ in GROUPS for key in (ours, *peers)]
    results = interleave(ctx, keys, lambda key: cross_latency(key, ctx, RATE, seconds), 1, brief=summary)
    rows = []
    for ours, peers, judge in GROUPS:
        backend = load(ours).backend
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            mine = quantiles(results[ours], q)
            for peer in peers:
                extra = "; ".join(filter(None, [shortfall(results[ours]), shortfall(results[peer])]))
                figure = f"latency {name}, {backend}, {RATE:.0f} msg/s, enqueuer and worker in 2 processes: " \
                         f"otpagent vs {peer}"
                if backend == "SQLite" and peer == peers[0]:
                    limit = SQLITE_TARGETS[q]
                    row = versus(figure, "ms", mine, quantiles(results[peer], q), target=f"<= {limit:.0f} ms",
                                 higher_is_better=False, extra=extra)
                    row.passed = None if row.value is None else row.value <= limit
                elif peer == judge and q == 0.99:
                    row = versus(figure, "ms", mine, quantiles(results[peer], q), target=f"<= {load(peer).name}'s",
                                 goal=1.0, higher_is_better=False, extra=extra)
                else:
                    row = versus(figure, "ms", mine, quantiles(results[peer], q), higher_is_better=False, extra=extra)
                rows.append(row)
    return rows
