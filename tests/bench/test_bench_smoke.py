"""Smoke run of every benchmark part at tiny sizes: each runs to the end and reports its rows.

No timing is asserted (the machines are shared and noisy); a part that crashes, hangs or
reports nothing is what these catch. Parts needing PostgreSQL or the HTTP server report
"not available" without them, which is fine here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import PARTS

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
