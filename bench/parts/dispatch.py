"""Figure 3: dispatch to the console channel (no latency): claim -> send -> record, end to end.

The queue is filled first (not timed); then ``start_processing()`` runs it dry. The clock
stops when the dispatcher has recorded every message as sent.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from bench import rawsql
from bench.common import Context, Row, agent_config, fresh_phones, rate, wait_for

CONTENT = "Your parcel arrives today between 10:00 and 12:00."


def requests(count: int, channels: list[str] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for number in fresh_phones(count):
        item: dict[str, Any] = {"phone_number": number, "message_type": "notification", "content": CONTENT,
                                "priority": "HIGH"}
        if channels:
            item["channels"] = channels
        out.append(item)
    return out


def fill(agent: Any, count: int, channels: list[str] | None = None) -> None:
    for start in range(0, count, 500):
        agent.send_bulk_messages(requests(min(500, count - start), channels))


def drain(agent: Any, count: int, budget: float) -> tuple[int, float]:
    """Start the workers on a filled queue; time until ``count`` are recorded sent (or budget)."""
    counters = agent.dispatcher.counters
    start = time.perf_counter()
    agent.start_processing()
    wait_for(lambda: counters["sent"] + counters["failed"] >= count, budget, interval=0.002)
    seconds = time.perf_counter() - start
    done = counters["sent"]
    agent.stop_processing()
    return done, seconds


def measure_agent(tmp: Path, count: int, budget: float, workers: int = 16, sync: str = "full") -> float:
    from otpagent import IntelligentOTPAgent

    with IntelligentOTPAgent(agent_config(tmp / "a.db", workers=workers, synchronous=sync)) as agent:
        fill(agent, count)
        done, seconds = drain(agent, count, budget)
    return rate(done, seconds)


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(5000, 200)
    budget = ctx.seconds(60, 10)
    rounds = itertools.count()
    with ctx.scratch("dispatch") as tmp:
        def agent() -> float:
            directory = tmp / f"agent{next(rounds)}"
            directory.mkdir()
            return measure_agent(directory, count, budget)

        value, baseline = ctx.best_of(
            agent, lambda: rate(*rawsql.claim_ack_loop(tmp / f"raw{next(rounds)}.db", count, 16, budget)))
        directory = tmp / "normal"
        directory.mkdir()
        normal = measure_agent(directory, count, budget, sync="normal")
        raw_normal = rate(*rawsql.claim_ack_loop(tmp / "raw-normal.db", count, 16, budget, "NORMAL"))
    ctx.shared["dispatch_rate"] = value
    ctx.say(f"dispatch console: {value:,.0f} msg/s vs raw {baseline:,.0f}; "
            f"synchronous=normal {normal:,.0f} vs raw {raw_normal:,.0f}")
    return [Row("dispatch to console, claim -> send -> record", value, "msg/s", ">= 2,500 msg/s", baseline,
                "raw claim(16)+ack loop, sqlite3", passed=value >= 2500),
            Row("dispatch to console, synchronous=normal", normal, "msg/s", "— (2,500 at FULL)", raw_normal,
                "raw claim+ack, NORMAL", passed=None)]
