"""Import time: ``from otpagent import IntelligentOTPAgent`` in a fresh interpreter.

An app that embeds the library pays this on every start (a CLI command, a serverless cold
start, a test run). The figure is the median over fresh interpreters of the time to import
otpagent, with its plugins loaded as an agent would load them, measured inside the child with
``perf_counter`` around the import (the interpreter's own start is outside it); the baseline is
the same measure of ``import asyncio``, a fixed amount of standard-library import work that
scales with the machine's speed. The part also lists any server, rendering or provider
stack the import pulled in: there should be none.

Both are measured with their bytecode cached, as an installed package has it (pip compiles on
install): the children write and read ``.pyc`` files under a scratch ``PYTHONPYCACHEPREFIX``
even where ``PYTHONDONTWRITEBYTECODE`` is set, after one warm-up import. Without the cache each
run would mostly measure compiling otpagent's source, which no installed copy does.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import Context, Row, child_env

TARGET_MS = 150.0
_HEAVY = ("starlette", "uvicorn", "prometheus_client", "httpx", "standardwebhooks", "rich", "twilio", "sendgrid",
          "psycopg", "opentelemetry")
_CHILD = """
import json, sys, time
started = time.perf_counter()
{body}
elapsed = (time.perf_counter() - started) * 1000.0
print(json.dumps({{"ms": elapsed, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""
_IMPORT = "from otpagent import IntelligentOTPAgent\nfrom otpagent.plugins import build_registry\nbuild_registry()"


def _measure(body: str, pycache: Path) -> tuple[float, list[str]]:
    code = _CHILD.format(body=body, heavy=_HEAVY)
    env = {k: v for k, v in child_env(PYTHONPYCACHEPREFIX=str(pycache)).items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=env, check=True)
    data = json.loads(result.stdout)
    return float(data["ms"]), list(data["heavy"])


def run(ctx: Context) -> list[Row]:
    rounds = ctx.pick(15, 5)
    figures: list[float] = []
    baselines: list[float] = []
    heavy: set[str] = set()
    with ctx.scratch("import-pycache") as pycache:
        _measure(_IMPORT, pycache)  # warm-up: writes the bytecode cache
        _measure("import asyncio", pycache)
        for _ in range(rounds):  # interleaved, so a burst of load hits both alike
            ms, pulled = _measure(_IMPORT, pycache)
            figures.append(ms)
            heavy.update(pulled)
            baselines.append(_measure("import asyncio", pycache)[0])
    value = statistics.median(figures)
    note = f"median of {rounds} fresh interpreters, bytecode cached; plugins loaded"
    note += f"; pulled in: {', '.join(sorted(heavy))}" if heavy else "; no server, rendering or provider stack"
    return [Row(figure="import otpagent (IntelligentOTPAgent + plugins)", value=round(value, 1), unit="ms",
                target=f"< {TARGET_MS:.0f} ms", baseline=round(statistics.median(baselines), 1),
                baseline_label="import asyncio", passed=value < TARGET_MS and not heavy, note=note)]
