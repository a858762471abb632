"""``python -m bench.routing``: print a table per scenario (and optionally write them to the docs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.routing import ScenarioResult, run, summary, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
MARK_START, MARK_END = "<!-- routing-table:start -->", "<!-- routing-table:end -->"


def write_docs(results: Sequence[ScenarioResult], scale: float) -> None:
    text = DOC.read_text(encoding="utf-8")
    misses = sum(not ok for _s, _by, checks in results for _what, ok in checks)
    head = (f"Scale {scale:g} (`python -m bench.routing --scale {scale:g} --write-docs`); "
            f"{misses} target(s) missed.")
    body = "\n\n".join([head, summary(results), *(table(r) for r in results)])
    start, end = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
    DOC.write_text(f"{text[:start]}{MARK_START}\n{body}\n{MARK_END}{text[end:]}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every scenario's message count")
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--write-docs", action="store_true", help="update the tables in docs/routing.md")
    args = parser.parse_args(argv)
    results = run(args.scale, args.scenario, on_result=lambda r: print(table(r), end="\n\n", flush=True))
    print(summary(results))
    if args.write_docs:
        write_docs(results, args.scale)
    return 0 if all(ok for _s, _by, checks in results for _what, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
