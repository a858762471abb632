"""Figure 9: a worker's resident memory with 10k, 100k and 1M messages queued (SQLite).

The queue is filled straight into the agent's schema with ``executemany`` (setup, not
measured), then a fresh worker process starts and dispatches for a few seconds while its RSS
is sampled; the figure is the peak. The queue grows tenfold between runs, so a worker that
loads the queue (or an unbounded cache) shows up as growth. Each figure's baseline is the
previous size's. Some growth from the smallest queue is expected and bounded: SQLite's page
cache (2 MB per connection, one connection per worker thread) fills once the database
outgrows it. "Flat" is judged over the last tenfold step (100k -> 1M): at most 1.1x.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import rawsql
from bench.common import Context, Row, agent_config, child_env

LIMIT_MB = 200.0
FLAT = 1.1  # the largest queue's RSS, at most this many times the previous (10x smaller) queue's


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def worker(db: str, seconds: float) -> None:
    """Child process: start an agent on ``db``, dispatch for ``seconds``, print peak RSS as JSON."""
    from otpagent import IntelligentOTPAgent

    peak = rss_mb()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with IntelligentOTPAgent(agent_config(Path(db))) as agent:
        started = rss_mb()
        agent.start_processing()
        time.sleep(seconds)
        agent.stop_processing()
        sent = agent.dispatcher.counters["sent"]
    stop.set()
    sampler.join(1)
    print(json.dumps({"peak_mb": max(peak, rss_mb()), "started_mb": started, "sent": sent}), flush=True)


def measure(db: Path, seconds: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.parts.memory", "worker", str(db), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120, env=child_env(), check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(ctx: Context) -> list[Row]:
    sizes = [10_000, 100_000, 1_000_000] if not ctx.quick else [1_000, 2_000, 5_000]
    seconds = ctx.seconds(6, 1)
    rows: list[Row] = []
    previous: tuple[str, float] | None = None
    with ctx.scratch("memory") as tmp:
        db = tmp / "queue.db"
        conn = rawsql.connect(db, synchronous="OFF")
        queued = 0
        consumed = 0
        try:
            for size in sizes:
                started = time.perf_counter()
                rawsql.fill(conn, queued, size - (queued - consumed))
                queued += size - (queued - consumed)
                ctx.say(f"queued {size:,} (fill {time.perf_counter() - started:.1f} s)")
                result = measure(db, seconds)
                consumed += int(result["sent"])
                peak = result["peak_mb"]
                label = f"{size // 1000:,}k" if size < 1_000_000 else f"{size // 1_000_000}M"
                last = size == sizes[-1]
                flat = not last or previous is None or peak <= FLAT * previous[1]
                target = f"<= {LIMIT_MB:.0f} MB" + (f", <= {FLAT}x the previous" if last else "")
                rows.append(Row(f"memory: worker peak RSS, {label} queued", peak, "MB", target,
                                None if previous is None else previous[1],
                                "" if previous is None else f"RSS at {previous[0]} queued",
                                passed=peak <= LIMIT_MB and flat,
                                note=f"dispatched {int(result['sent']):,} in {seconds:.0f} s from {label} queued"))
                ctx.say(f"{label}: peak {peak:.1f} MB (after start {result['started_mb']:.1f} MB)")
                previous = (label, peak)
        finally:
            conn.close()
    return rows


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    worker(sys.argv[2], float(sys.argv[3]))
