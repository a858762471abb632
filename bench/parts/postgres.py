"""Figure 8: a PostgreSQL fleet of 1 and 4 real ``otpagent run`` worker processes.

The workers start on an empty private schema and report ready; then one transaction queues
every message and the clock runs until the database shows them all sent. Baseline: the same
number of bare processes running a ``FOR UPDATE SKIP LOCKED`` claim + per-message ack loop in
psycopg on a schema of the same shape. Needs ``otpagent-postgres`` and a server at
``OTPAGENT_BENCH_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import Context, Row, agent_config, child_env, console_channel, rate, venv_bin, wait_for
from bench.parts.dispatch import requests

DSN = os.environ.get("OTPAGENT_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
#: Connections per worker process. The server is shared (max_connections is often 100, and
#: the test suite may be using it too), so 4 processes x 8 stay well inside it.
POOL = 8


def unavailable() -> str | None:
    """Why the part cannot run, or None."""
    try:
        import psycopg

        import otpagent_postgres  # noqa: F401
    except ImportError as exc:
        return f"otpagent-postgres is not installed ({exc.name})"
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to PostgreSQL at {DSN.split('@')[-1]}: {type(exc).__name__}"
    return None


def pg_config(schema: str, outbox: Path | None = None, pool: int = POOL) -> dict[str, Any]:
    storage = {"backend": "postgres", "dsn": DSN, "schema": schema, "pool_max_size": pool}
    config = agent_config(None, storage=storage, channels={"DEV": console_channel(outbox=outbox)})
    config["dispatcher"]["lease_seconds"] = 30
    config["dispatcher"]["channel_timeout_seconds"] = 5
    return config


def drop(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def sent_count(conn: Any, schema: str) -> int:
    from psycopg import sql

    row = conn.execute(sql.SQL("SELECT count(*) FROM {}.messages WHERE status = 'sent'").format(
        sql.Identifier(schema))).fetchone()
    return int(row[0]) if row else 0


def fleet(tmp: Path, schema: str, processes: int, count: int, budget: float) -> tuple[int, float]:
    """Start ``processes`` workers, queue ``count`` in one transaction, time until all are sent."""
    import psycopg

    from otpagent import IntelligentOTPAgent

    config = pg_config(schema)
    with IntelligentOTPAgent(pg_config(schema, pool=2)) as producer, \
            psycopg.connect(DSN, autocommit=True) as watch:  # the producer also migrates the schema
        path = tmp / "worker.json"
        path.write_text(json.dumps(config))
        logs = [tmp / f"worker-{i}.log" for i in range(processes)]
        env = child_env(OTPAGENT_LOAD_PLUGINS="console,postgres")
        procs = []
        for log in logs:
            with log.open("wb") as out:
                procs.append(subprocess.Popen([venv_bin("otpagent"), "--config", str(path), "run"], stdout=out,
                                              stderr=subprocess.STDOUT, env=env))
        try:
            ready = wait_for(lambda: all("running" in p.read_text(errors="replace") for p in logs), 60, 0.05)
            if not ready:
                raise RuntimeError("workers did not start: " + logs[0].read_text(errors="replace")[-500:])
            batch = requests(count)
            start = time.perf_counter()
            producer.send_bulk_messages(batch)
            deadline = start + budget
            done = 0
            while time.perf_counter() < deadline:
                done = sent_count(watch, schema)
                if done >= count:
                    break
                time.sleep(0.02)
            seconds = time.perf_counter() - start
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
    return done, seconds


def raw_fleet(schema: str, processes: int, count: int, budget: float) -> tuple[int, float]:
    """``processes`` bare psycopg loops claiming from ``count`` queued rows."""
    from otpagent import IntelligentOTPAgent

    with IntelligentOTPAgent(pg_config(schema, pool=2)) as producer:
        for start in range(0, count, 2000):
            producer.send_bulk_messages(requests(min(2000, count - start)))
    go = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-m", "bench.parts.postgres", "raw", schema, str(go), str(budget)],
                              stdout=subprocess.PIPE, text=True, env=child_env()) for _ in range(processes)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=budget + 60)
        results.append(json.loads(out.strip().splitlines()[-1]))
    done = sum(r["done"] for r in results)
    return done, max(r["end"] for r in results) - min(r["start"] for r in results)


def raw_worker(schema: str, go: float, budget: float) -> None:
    """One bare claim + ack loop: claim 16 with SKIP LOCKED in a transaction, ack each in its own."""
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(DSN)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.commit()
    claim = ("SELECT seq FROM messages WHERE status IN ('queued', 'scheduled', 'retrying') AND due_at <= %s "
             "ORDER BY priority DESC, due_at, seq LIMIT 16 FOR UPDATE SKIP LOCKED")
    time.sleep(max(0.0, go - time.time()))
    start = time.time()
    done = 0
    deadline = start + budget
    while time.time() < deadline:
        now = time.time()
        seqs = [r[0] for r in conn.execute(claim, (now,)).fetchall()]
        if not seqs:
            conn.commit()
            break
        conn.execute("UPDATE messages SET status = 'sending', lease_owner = 'w', lease_expires_at = %s, "
                     "updated_at = %s WHERE seq = ANY(%s)", (now + 30, now, seqs))
        conn.commit()
        for seq in seqs:
            conn.execute("UPDATE messages SET status = 'sent', lease_owner = NULL, lease_expires_at = NULL, "
                         "updated_at = %s WHERE seq = %s AND lease_owner = 'w'", (time.time(), seq))
            conn.commit()
            done += 1
    end = time.time()
    conn.close()
    print(json.dumps({"done": done, "start": start, "end": end}), flush=True)


def run(ctx: Context) -> list[Row]:
    why = unavailable()
    if why is not None:
        return [Row.unavailable("PostgreSQL fleet, 1 worker process", "msg/s", ">= 1,000 msg/s", why),
                Row.unavailable("PostgreSQL fleet, 4 worker processes", "msg/s", ">= 3,000 msg/s", why)]
    rows = []
    budget = ctx.seconds(90, 20)
    for processes, target in ((1, 1000.0), (4, 3000.0)):
        count = ctx.pick(5000 if processes == 1 else 10000, 200)
        schemas = [f"bench_{uuid.uuid4().hex[:12]}" for _ in range(2)]
        try:
            with ctx.scratch(f"pg-{processes}") as tmp:
                done, seconds = fleet(tmp, schemas[0], processes, count, budget)
            raw_done, raw_seconds = raw_fleet(schemas[1], processes, count, budget)
        finally:
            for schema in schemas:
                drop(schema)
        value, baseline = rate(done, seconds), rate(raw_done, raw_seconds)
        ctx.say(f"postgres fleet x{processes}: {value:,.0f} msg/s vs raw {baseline:,.0f}")
        note = "" if done >= count else f"{done}/{count} sent within the time budget"
        label = "process" if processes == 1 else "processes (total)"
        rows.append(Row(f"PostgreSQL fleet, {processes} worker {label}", value, "msg/s", f">= {target:,.0f} msg/s",
                        baseline, f"raw SKIP LOCKED claim(16)+ack, {processes} proc", passed=value >= target,
                        note=note))
    return rows


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "raw":
    raw_worker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
