"""Figure 7: enqueue -> provider latency at half the measured dispatch capacity (SQLite).

Messages are sent one per call at a steady rate of half the capacity measured by the
``dispatch`` part (or measured here when that part did not run). Latency is from just before
``send_message`` to the console channel's send time (the ``at`` of its outbox line).
Baseline: one durable single-row commit plus one loopback TCP round trip, the least a
queued-then-sent message can cost.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from bench import rawsql
from bench.common import Context, Row, agent_config, console_channel, fresh_phones, percentile, phone, wait_for
from bench.parts.dispatch import CONTENT, measure_agent


def steady(tmp: Path, per_second: float, seconds: float) -> tuple[list[float], int]:
    """Send at ``per_second`` for ``seconds``; returns latencies (ms) and how many were sent."""
    from otpagent import IntelligentOTPAgent

    outbox = tmp / "outbox.jsonl"
    count = max(10, int(per_second * seconds))
    sent_at: dict[str, float] = {}
    config = agent_config(tmp / "a.db", channels={"DEV": console_channel(outbox=outbox)})
    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        agent.send_message({"phone_number": phone(0), "message_type": "alert", "content": CONTENT})  # warm up
        wait_for(lambda: agent.dispatcher.counters["sent"] >= 1, 10)
        requests = [{"phone_number": number, "message_type": "alert", "content": CONTENT, "priority": "HIGH"}
                    for number in fresh_phones(count)]
        start = time.perf_counter()
        for i, request in enumerate(requests):
            due = start + i / per_second
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t0 = time.time()
            sent_at[agent.send_message(request)] = t0
        wait_for(lambda: agent.dispatcher.counters["sent"] >= count + 1, 30 + seconds)
        agent.stop_processing()
    latencies = []
    for line in outbox.read_text().split("\n")[:-1]:  # complete lines only
        entry = json.loads(line)
        if entry["message_id"] in sent_at:
            latencies.append((entry["at"] - sent_at[entry["message_id"]]) * 1000.0)
    return latencies, count


def commit_and_round_trip(tmp: Path, count: int) -> list[float]:
    """``count`` times: one single-row FULL commit, then one 64-byte loopback echo (ms each)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            for _ in range(count):
                data = conn.recv(64)
                if not data:
                    return
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    db = rawsql.connect(tmp / "raw.db")
    out = []
    try:
        for i in range(count):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute(rawsql.INSERT, rawsql.message_row(i, time.time()))
            db.execute("COMMIT")
            client.sendall(b"x" * 64)
            got = 0
            while got < 64:
                chunk = client.recv(64 - got)
                if not chunk:
                    break
                got += len(chunk)
            out.append((time.perf_counter() - t0) * 1000.0)
    finally:
        client.close()
        db.close()
        thread.join(5)
        server.close()
    return out


def run(ctx: Context) -> list[Row]:
    with ctx.scratch("latency") as tmp:
        capacity = ctx.shared.get("dispatch_rate")
        if capacity is None:
            (tmp / "cap").mkdir()
            capacity = measure_agent(tmp / "cap", ctx.pick(3000, 200), 60)
        per_second = max(1.0, capacity / 2)
        latencies, count = steady(tmp, per_second, ctx.seconds(6, 1))
        base = commit_and_round_trip(tmp, ctx.pick(2000, 100))
    if len(latencies) < count:
        note = f"only {len(latencies)}/{count} delivered within the time budget"
    else:
        note = f"{count} messages at {per_second:,.0f} msg/s (half of {capacity:,.0f})"
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    b50, b99 = percentile(base, 0.5), percentile(base, 0.99)
    ctx.say(f"latency at {per_second:,.0f}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
            f"baseline p50 {b50:.2f}, p99 {b99:.2f}")
    return [
        Row("enqueue -> provider latency p50, half capacity, SQLite", p50, "ms", "— (p99 is the target)", b50,
            "1 commit + 1 loopback RTT, p50", passed=None, note=note),
        Row("enqueue -> provider latency p99, half capacity, SQLite", p99, "ms", "<= 10 ms", b99,
            "1 commit + 1 loopback RTT, p99", passed=p99 <= 10.0 and len(latencies) >= count),
    ]
