"""otpagent on SQLite beside huey (``SqliteHuey(fsync=True)``), measured in the same run.

The same number of pre-filled no-op jobs through one worker process each (otpagent: routing
to the console channel with ``quiet: true``, no sinks, ``synchronous: full``), timed from "go"
until every job ran and none is left unacknowledged; CPU per message is the worker process's
(SQLite runs inside it). Enqueue one per call from a fresh process. Targets (issue 17):
otpagent >= 1.0x huey for processing and for enqueue.
"""

from __future__ import annotations

from bench.common import Context, Row
from bench.parts.peers_pg import cpu, problems, rates
from bench.peers.compare import describe, interleave, versus
from bench.peers.harness import enqueue_rate, processing

OURS = "otpagent-sqlite"
PEER = "huey"


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(20_000, 300)
    budget = ctx.seconds(300, 90)
    results = interleave(ctx, [OURS, PEER], lambda key: processing(key, ctx, count, 1, budget), ctx.pick(2, 1))
    extra = "; ".join(filter(None, [describe(PEER), problems(results)]))
    rows = [versus(f"SQLite, {count:,} pre-filled, 1 worker process: otpagent vs huey", "msg/s", rates(results)[OURS],
                   rates(results)[PEER], target=">= 1.0x", goal=1.0, extra=extra),
            versus("SQLite CPU per message (worker process): otpagent vs huey", "µs", cpu(results)[OURS],
                   cpu(results)[PEER], higher_is_better=False)]
    enqueue_count = ctx.pick(2000, 50)
    budget = ctx.seconds(15, 5)
    enqueued = interleave(ctx, [OURS, PEER], lambda key: enqueue_rate(key, ctx, enqueue_count, 1, budget),
                          ctx.rounds)
    rows.append(versus("SQLite enqueue, 1 per call (send_message): otpagent vs huey", "msg/s", enqueued[OURS],
                       enqueued[PEER], target=">= 1.0x", goal=1.0))
    return rows
