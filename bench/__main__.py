"""``python -m bench [part ...] [--quick] [--write-docs]``: run benchmark parts, print one table.

With no part named, every part runs and (unless ``--quick`` or ``--no-docs``) the table is
written to ``docs/benchmarks.md``. A part that crashes is reported as a failed row and the
run goes on; the exit status is non-zero only when a part crashed, never for a missed target
(targets are for people to read, not for CI to flake on). ``BENCH_QUICK=1`` is ``--quick``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Context, Row
from bench.report import format_table, machine_info, notes, write_docs

#: part name -> (module, what it measures). Modules expose ``run(ctx) -> list[Row]``.
PARTS: dict[str, tuple[str, str]] = {
    "enqueue": ("bench.parts.enqueue", "figures 1-2: enqueue one per call and in batches of 100"),
    "dispatch": ("bench.parts.dispatch", "figure 3: dispatch to the console channel"),
    "twilio": ("bench.parts.provider", "figure 4: dispatch through the Twilio SDK to a zero-latency fake"),
    "slow": ("bench.parts.slowprovider", "figure 5: 200 workers against a 200 ms fake"),
    "otp": ("bench.parts.otp", "figure 6: OTP issue + verify pairs in process"),
    "latency": ("bench.parts.latency", "figure 7: enqueue -> provider latency at half capacity"),
    "postgres": ("bench.parts.postgres", "figure 8: PostgreSQL fleet of 1 and 4 worker processes"),
    "memory": ("bench.parts.memory", "figure 9: worker RSS with 10k, 100k and 1M queued messages"),
    "http": ("bench.parts.http", "figure 10: HTTP API POST /v1/otp + verify over loopback"),
    "recovery": ("bench.parts.recovery", "figure 11: SIGKILL one of two workers -> its in-flight messages sent again"),
    "routing": ("bench.parts.routing", "routing simulation: adaptive vs priority and an oracle, per scenario"),
    "fraud": ("bench.parts.fraud", "fraud guard simulation: a pumping attack in normal traffic (bench/fraud.py)"),
    "import": ("bench.parts.importtime", "figure 12: import time of the library with its plugins"),
    "peers-pg": ("bench.parts.peers_pg", "beside PgQueuer and procrastinate: processing, CPU, enqueue"),
    "peers-sqlite": ("bench.parts.peers_sqlite", "beside huey (SQLite, fsync): processing, CPU, enqueue"),
    "peers-redis": ("bench.parts.peers_redis", "beside Dramatiq and Celery on Redis: processing, enqueue"),
    "crosslatency": ("bench.parts.crosslatency", "enqueue -> job latency across processes at 200 msg/s, all"),
}
OPTIONAL: set[str] = set()  # parts whose module may be absent (routing checks for itself)
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"


def _load(name: str) -> Callable[[Any], Any] | None:
    module_name = PARTS[name][0]
    if name in OPTIONAL and importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    runner: Callable[[Any], Any] = module.run
    return runner


def _as_row(item: Any, part: str) -> Row:
    """Accept our Row, or any object / mapping with the same fields (parts written elsewhere)."""
    if isinstance(item, Row):
        row = item
    else:
        get = item.get if isinstance(item, dict) else (lambda k, d=None: getattr(item, k, d))
        row = Row(figure=str(get("figure", "?")), value=get("value"), unit=str(get("unit", "")),
                  target=str(get("target", "")), baseline=get("baseline"),
                  baseline_label=str(get("baseline_label", "") or ""), passed=get("passed"),
                  note=str(get("note", "") or ""))
    row.part = row.part or part
    return row


def _load_average() -> str:
    """The machine's load average: these machines are shared, and the figures move with it."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def run_part(name: str, ctx: Context) -> tuple[list[Row], bool]:
    """Run one part; returns its rows and whether it crashed."""
    print(f"== {name}: {PARTS[name][1]}", flush=True)
    started = time.perf_counter()
    try:
        runner = _load(name)
        if runner is None:
            rows = [Row.unavailable(name, "", "", f"{PARTS[name][0]} is not present")]
        else:
            rows = [_as_row(r, name) for r in runner(ctx) or []]
        crashed = False
    except Exception as exc:
        traceback.print_exc()
        rows = [Row(figure=name, value=None, unit="", target="", passed=False,
                    note=f"crashed: {type(exc).__name__}: {exc}")]
        crashed = True
    for row in rows:
        row.part = row.part or name
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    return rows, crashed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="part", help=f"parts to run (default: all): {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="tiny sizes (seconds): a smoke run, figures meaningless")
    parser.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md even for a partial run")
    parser.add_argument("--no-docs", action="store_true", help="never write docs/benchmarks.md")
    parser.add_argument("--docs-path", type=Path, default=DOCS, help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, what) in PARTS.items():
            print(f"{name:12} {what}")
        return 0
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    names = [p for p in PARTS if p in args.parts] if args.parts else list(PARTS)
    ctx = Context(quick=args.quick)
    load_at_start = _load_average()
    started = time.perf_counter()
    rows: list[Row] = []
    crashed: list[str] = []
    try:
        for name in names:
            part_rows, failed = run_part(name, ctx)
            rows += part_rows
            if failed:
                crashed.append(name)
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    print()
    print(format_table(rows))
    for note in notes(rows):
        print(f"* {note}")
    caveat = " (quick: sizes too small to mean anything)" if ctx.quick else ""
    print(f"\n{len(rows)} figures in {seconds:.0f} s{caveat}; "
          f"load average {load_at_start} at start, {_load_average()} at end")
    write = args.write_docs or (not args.parts and not ctx.quick)
    if write and not args.no_docs:
        info = {**machine_info(), "load average (1/5/15 min) at start": load_at_start, "at end": _load_average()}
        write_docs(args.docs_path, rows, info, names, seconds, template=TEMPLATE)
        print(f"wrote {args.docs_path}")
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


TEMPLATE = """# Benchmarks

`nox -s bench` (or `python -m bench [part ...]`) measures every figure beside a baseline run on
the same machine in the same run; read the ratio, not the absolute number.
"""

if __name__ == "__main__":
    sys.exit(main())
