"""``python -m bench.peers.profile PEER [--processes N] [--count N] [--enqueue BATCH]``: where time goes.

Runs one processing measurement (or one enqueue measurement) of a peer exactly as the
``peers-*`` parts do, with py-spy sampling the worker (or enqueuing) process, and prints
the functions holding the GIL most often: inclusive (the function or anything it called)
and self. The raw collapsed stacks are kept (``--out``) for a flame graph
(``py-spy``'s raw format is what ``flamegraph.pl`` and speedscope read). Needs py-spy
(``pip install py-spy``; the bench sessions install it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import Context
from bench.peers import PEERS
from bench.peers.harness import SPY, enqueue_rate, processing

__all__ = ["summarise"]


def _frame_name(frame: str) -> str:
    """``function (path/module.py:123)`` -> ``module.py:function`` (lines merged)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{Path(path).name}:{name.strip()}"


def summarise(files: list[Path], top: int = 25, focus: str = "") -> str:
    """The ``top`` functions by inclusive and by self share of the samples in ``files``; with
    ``focus``, only of the samples inside a function whose name holds it (e.g. the enqueue
    calls, leaving out the child's start-up)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = everything = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame_name(f) for f in stack.split(";") if " (" in f]
            everything += count
            if not frames or (focus and not any(focus in f for f in frames)):
                continue
            total += count
            for name in set(frames):
                inclusive[name] += count
            own[frames[-1]] += count
    if not total:
        return "no samples (was py-spy allowed to attach? it needs ptrace permission)"
    within = f" inside {focus!r} ({100 * total / everything:.0f}% of {everything:,})" if focus else ""
    lines = [f"{total:,} samples holding the GIL{within}", "", "inclusive  function"]
    lines += [f"{100 * n / total:8.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self       function"]
    lines += [f"{100 * n / total:8.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--count", type=int, default=20_000, help="jobs pre-filled (default 20,000)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--enqueue", type=int, metavar="BATCH", help="profile enqueueing instead (batch size)")
    parser.add_argument("--out", type=Path, help="keep the collapsed stacks in this directory")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", default=None,
                        help="only samples inside functions whose name holds this (default with --enqueue: "
                             "'Producer.send', the enqueue calls)")
    args = parser.parse_args(argv)
    if not Path(SPY[0]).exists():
        parser.error(f"py-spy is not installed beside {sys.executable} (pip install py-spy)")
    out = args.out or Path(tempfile.mkdtemp(prefix="otpagent-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context()
    try:
        if args.enqueue:
            rate = enqueue_rate(args.peer, ctx, args.count, args.enqueue, 60, profile=out / f"{args.peer}-enqueue.txt")
            print(f"{args.peer}: enqueue, batches of {args.enqueue}: {rate:,.0f} jobs/s (under py-spy)")
        else:
            result = processing(args.peer, ctx, args.count, args.processes, 300, profile=out)
            worker, server = result.cpu_us()
            print(f"{args.peer}: {result.rate:,.0f} msg/s with {args.processes} process(es) (under py-spy); "
                  f"CPU/msg worker {worker:,.0f} µs" + (f" + server {server:,.0f} µs" if server is not None else ""))
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    focus = args.focus if args.focus is not None else ("Producer.send" if args.enqueue else "")
    print(summarise(sorted(out.glob(f"{args.peer}-*.txt")), args.top, focus))
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
