"""otpagent on SQLite beside Dramatiq and Celery on the machine's Redis, in the same run.

The comparison people make when they choose a queue: otpagent's embedded durable queue
against a broker in memory. Redis here runs without persistence (no snapshots, no AOF), so
the peers' queues would not survive a restart; otpagent's commits are fsynced. Same shapes
as ``peers-sqlite``: pre-filled no-op jobs through one worker process, enqueue one per call.
Target (issue 17): otpagent's SQLite processing >= 1.0x Dramatiq; Celery for information.
"""

from __future__ import annotations

from bench.common import Context, Row
from bench.parts.peers_pg import problems, rates
from bench.peers.compare import describe, interleave, versus
from bench.peers.harness import enqueue_rate, processing
from bench.peers.redis_keys import persistence, redis_unavailable

OURS = "otpagent-sqlite"
TARGETED = "dramatiq"
PEERS = (TARGETED, "celery")


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(20_000, 300)
    budget = ctx.seconds(300, 90)
    server = "Redis: " + (redis_unavailable() or persistence())
    results = interleave(ctx, [OURS, *PEERS], lambda key: processing(key, ctx, count, 1, budget), ctx.pick(2, 1))
    speed = rates(results)
    rows = []
    for peer in PEERS:
        targeted = peer == TARGETED
        extra = "; ".join(filter(None, [describe(peer), server, problems({OURS: results[OURS], peer: results[peer]})]))
        rows.append(versus(f"SQLite otpagent vs {peer} on Redis, {count:,} pre-filled, 1 worker process", "msg/s",
                           speed[OURS], speed[peer], target=">= 1.0x" if targeted else "",
                           goal=1.0 if targeted else None, extra=extra))
    enqueue_count = ctx.pick(2000, 50)
    budget = ctx.seconds(15, 5)
    enqueued = interleave(ctx, [OURS, *PEERS], lambda key: enqueue_rate(key, ctx, enqueue_count, 1, budget),
                          ctx.rounds)
    for peer in PEERS:
        rows.append(versus(f"SQLite otpagent vs {peer} on Redis, enqueue 1 per call", "msg/s", enqueued[OURS],
                           enqueued[peer]))
    return rows
