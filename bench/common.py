"""What every benchmark part shares: the result row, run settings, agent configs and helpers.

Every figure is printed beside a baseline measured in the same run on the same machine, because
these machines are shared and noisy: absolute numbers drift, ratios hold. Every loop here is
bounded in count *and* in time, and nothing talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otpagent.storage.rows import percentile as storage_percentile

__all__ = [
    "BENCH_OTP_SECRET",
    "Context",
    "Row",
    "agent_config",
    "console_channel",
    "free_port",
    "percentile",
    "phone",
    "rate",
    "wait_for",
]


@dataclass
class Row:
    """One figure of the table.

    ``ratio`` is ``value / baseline`` (for a latency, lower is better; the target says which
    way is good). ``passed`` is None when the figure could not be measured ("not available").
    """

    figure: str
    value: float | None
    unit: str
    target: str
    baseline: float | None = None
    baseline_label: str = ""
    passed: bool | None = None
    note: str = ""
    part: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @classmethod
    def unavailable(cls, figure: str, unit: str, target: str, why: str) -> Row:
        return cls(figure=figure, value=None, unit=unit, target=target, passed=None, note=f"not available: {why}")


@dataclass
class Context:
    """Run settings and what parts hand to each other (e.g. the measured dispatch capacity)."""

    quick: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="otpagent-bench-")))
    shared: dict[str, Any] = field(default_factory=dict)
    verbose: bool = True

    @property
    def rounds(self) -> int:
        """How many alternating rounds (figure, baseline, figure, ...) to keep the best of."""
        return 1 if self.quick else 3

    def best_of(self, figure: Callable[[], float], baseline: Callable[[], float], rounds: int | None = None
                ) -> tuple[float, float]:
        """Alternate the measurement and its baseline ``rounds`` times; keep the best of each.

        The machines are shared: a neighbour's burst can halve one measurement. Alternating
        gives both sides the same weather, and the best of a few rounds filters the bursts.
        """
        best_figure = best_baseline = 0.0
        for _ in range(1 if self.quick else rounds or self.rounds):
            best_figure = max(best_figure, figure())
            best_baseline = max(best_baseline, baseline())
        return best_figure, best_baseline

    def pick(self, full: int, quick: int) -> int:
        """A size: ``full`` normally, ``quick`` for smoke runs."""
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    @contextmanager
    def scratch(self, name: str) -> Iterator[Path]:
        """A fresh directory for one measurement, removed afterwards."""
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"  . {text}", flush=True)


def console_channel(*, outbox: Path | None = None, latency_ms: float = 0.0) -> dict[str, Any]:
    """A quiet console channel section (no printing: the terminal must not be the bottleneck)."""
    section: dict[str, Any] = {"plugin": "console", "kind": "sms", "quiet": True}
    if outbox is not None:
        section["outbox"] = str(outbox)
    if latency_ms:
        section["latency_ms"] = latency_ms
    return section


#: The benchmarks' master OTP secret (not for production: it is in the repository).
BENCH_OTP_SECRET = "bench-otp-secret-not-for-production"


def agent_config(db: Path | None, *, channels: dict[str, Any] | None = None, workers: int | None = None,
                 storage: dict[str, Any] | None = None, synchronous: str = "full", **extra: Any) -> dict[str, Any]:
    """An agent config for benchmarks: one channel, no sinks, fast retries, no OTP cooldown."""
    config: dict[str, Any] = {
        "storage": storage or {"backend": "sqlite", "path": str(db), "synchronous": synchronous},
        "channels": channels or {"DEV": console_channel()},
        "routing": {"strategy": "priority"},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
        "dispatcher": {"poll_interval_seconds": 0.05, **({"workers": workers} if workers is not None else {})},
        # A fixed secret in the config: every process of a run (and the producer built from this
        # dict in the bench's own process) then holds the same OTP key, wherever it runs.
        "otp": {"resend_cooldown_seconds": 0, "max_per_hour": 1_000_000, "max_attempts": 5,
                "secret": BENCH_OTP_SECRET},
        "sinks": [],
    }
    config.update(extra)
    return config


def phone(i: int) -> str:
    """A distinct, valid UK mobile number per ``i`` (Ofcom's drama range and its neighbours)."""
    return f"+4477{i % 100_000_000:08d}"


_unused = [20_000_000]


def fresh_phones(count: int) -> list[str]:
    """``count`` numbers no earlier call in this process returned.

    Every round of a figure takes new recipients, as traffic to many people does: a round
    that reused the previous round's numbers would find them in the agent's parse caches and
    measure less work than a real first send.
    """
    start = _unused[0]
    _unused[0] += count
    return [phone(start + i) for i in range(count)]


def in_threads(threads: int, work: Callable[[int], int]) -> tuple[int, float]:
    """Run ``work(index)`` in ``threads`` threads at once; (sum of what they return, seconds)."""
    done = [0] * threads
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            done[index] = work(index)
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,), name=f"bench-caller-{i}") for i in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return sum(done), seconds


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list (the core's own definition)."""
    value = storage_percentile(sorted(values), q)
    assert value is not None, "percentile of an empty list"
    return value


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str:
    """A console script installed beside the running interpreter (``otpagent``)."""
    import sys

    return str(Path(sys.executable).with_name(name))


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: this one, with the repository root importable."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""), **extra}
