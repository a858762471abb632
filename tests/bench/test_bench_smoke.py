"""Smoke run of every benchmark part at tiny sizes: each runs to the end and reports its rows.

No timing is asserted (the machines are shared and noisy); a part that crashes, hangs or
reports nothing is what these catch. Parts needing PostgreSQL or the HTTP server report
"not available" without them, which is fine here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import PARTS
from bench.peers import PEERS

#: Drivers of otpagent itself: they need nothing the tests session lacks.
OUR_DRIVERS = ("otpagent-sqlite", "otpagent-postgres")

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("part", list(PARTS))
def test_each_benchmark_part_runs_at_tiny_sizes_and_prints_its_figures(part: str, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"

    result = subprocess.run([sys.executable, "-m", "bench", part, "--quick", "--docs-path", str(docs)],
                            cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "crashed" not in result.stdout
    table = result.stdout.split("figure", 1)[-1]
    assert "figures in" in table
    assert not docs.exists(), "a quick partial run must not write the docs page"


def test_the_runner_writes_the_table_and_machine_to_the_docs_page_when_asked(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written intro\n\n<!-- bench:begin (old) -->\nold\n<!-- bench:end -->\n"
                    "\n## Where the time goes\n\nkept\n")
    from bench.report import BEGIN

    docs.write_text(docs.read_text().replace("<!-- bench:begin (old) -->", BEGIN))

    result = subprocess.run([sys.executable, "-m", "bench", "enqueue", "--quick", "--write-docs", "--docs-path",
                             str(docs)], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)

    assert result.returncode == 0, result.stderr[-3000:]
    text = docs.read_text()
    assert "hand-written intro" in text and "kept" in text and "\nold\n" not in text
    assert "| enqueue, 1 per call (send_message), SQLite |" in text
    assert "sqlite:" in text and "python:" in text and "cores:" in text


def test_unknown_parts_are_refused_with_the_list_of_parts() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)

    assert result.returncode == 2
    assert "enqueue" in result.stderr and "dispatch" in result.stderr


# -- the peer drivers (bench/peers): each one end to end at tiny sizes ---------------------------------
#
# The peers (PgQueuer, procrastinate, huey, Dramatiq, Celery) are installed only by the bench sessions:
# their drivers' tests carry the `peers` marker, which `nox -s tests` deselects (pyproject addopts) and
# `nox -s bench_smoke` selects; the otpagent drivers (the same harness) run in both. Selected, a
# missing peer is a failure, never a skip.


def _require(key: str) -> Any:
    from bench.peers import load

    peer = load(key)
    if not peer.installed():
        pytest.fail(f"{peer.distribution} is not installed (nox -s bench_smoke installs the peers)", pytrace=False)
    why = peer.unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{key}: {why}", pytrace=False)
        pytest.skip(why)
    return peer


def _bench_keys() -> list[str]:
    """Keys the Redis peers left in the bench's Redis databases (there must be none)."""
    try:
        import redis
    except ImportError:
        return []
    from bench.peers.redis_keys import CELERY_DB, DB, url

    found: list[str] = []
    for db in (DB, CELERY_DB):
        client = redis.Redis.from_url(url(db), socket_connect_timeout=2)
        found += [k.decode() for k in client.scan_iter(match="*otpbench-*", count=1000)]
        found += [k.decode() for k in client.scan_iter(match="unacked*", count=1000)]
    return found


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.peers) if k not in OUR_DRIVERS else k
                                 for k in PEERS])
def test_each_peer_driver_runs_every_job_once_and_cleans_up(key: str, tmp_path: Path) -> None:
    from bench.common import Context
    from bench.peers.harness import cross_latency, enqueue_rate, processing

    _require(key)
    ctx = Context(quick=True, workdir=tmp_path, verbose=False)

    done = processing(key, ctx, 40, 1, 90)
    enqueued = enqueue_rate(key, ctx, 20, 1, 30)  # raises unless the queue holds every job it enqueued
    latencies, sent = cross_latency(key, ctx, 40, 0.5)

    assert (done.ran, done.pending) == (40, 0), done
    assert done.finished in (None, 40), done
    assert done.problems() == ""
    assert done.rate > 0 and enqueued > 0
    assert len(latencies) == sent == 20
    assert all(0 < ms < 60_000 for ms in latencies), latencies
    assert not list(tmp_path.glob("peer-*")), "a measurement left its directory behind"
    assert _bench_keys() == []


def test_process_tree_cpu_counts_the_cpu_time_of_a_child_process() -> None:
    from bench.peers.cpu import process_tree_cpu

    burn = "import time\nwhile time.process_time() < 0.3: pass\nprint('burnt', flush=True)\ntime.sleep(60)"
    spawn = (f"import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
             "print(child.pid, flush=True)\nchild.wait()")
    parent = subprocess.Popen([sys.executable, "-c", spawn], stdout=subprocess.PIPE, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "burnt"

        seconds = process_tree_cpu(parent.pid)  # the parent itself only waits: the CPU is its child's

        assert 0.28 <= seconds < 5.0
    finally:
        if child_pid:
            os.kill(child_pid, 9)
        parent.wait(10)


def test_a_comparison_row_reports_the_ratio_a_missed_target_and_a_missing_peer() -> None:
    from bench.peers.compare import Measured, versus
    from bench.report import cells

    ours, theirs = Measured("otpagent-postgres", [800.0, 900.0]), Measured("pgqueuer", [1800.0, 1500.0])
    missing = Measured[float]("procrastinate", why_not="procrastinate is not installed")

    row = versus("processing", "msg/s", ours, theirs, target=">= 1.0x", goal=1.0)
    lower = versus("CPU", "µs", Measured("otpagent-sqlite", [900.0, 800.0]), Measured("huey", [600.0, 500.0]),
                   higher_is_better=False)
    absent = versus("processing", "msg/s", ours, missing, target=">= 1.0x", goal=1.0)

    assert (row.value, row.baseline, row.passed) == (900.0, 1800.0, False)
    assert row.ratio == 0.5 and cells(row)[-1] == "missed"
    assert "rounds: otpagent 800, 900; PgQueuer 1,800, 1,500" in row.note
    assert (lower.value, lower.baseline, lower.passed) == (800.0, 500.0, None)
    assert (absent.baseline, absent.passed) == (None, None)
    assert "procrastinate is not installed" in absent.note and cells(absent)[-1] == "info"
