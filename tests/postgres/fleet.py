"""Runs a fleet of real ``otpagent run`` worker processes against one PostgreSQL schema.

Each worker gets its own config file and console outbox (so a test can tell which worker
delivered what); all share the database, hence the queue, the rate-limit buckets and leases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.contract.backends import PG_DSN

OTPAGENT = str(Path(sys.executable).with_name("otpagent"))


def fleet_config(schema: str, outbox: Path, *, per_second: float | None = None, burst: int = 10,
                 latency_ms: float = 0, lease_seconds: float = 10.0, workers: int = 16,
                 dsn: str = PG_DSN) -> dict[str, Any]:
    channel: dict[str, Any] = {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(outbox),
                               "latency_ms": latency_ms}
    if per_second is not None:
        channel["rate_limit"] = {"per_second": per_second, "burst": burst}
    return {
        "storage": {"backend": "postgres", "dsn": dsn, "schema": schema, "pool_max_size": 12,
                    "connect_timeout_seconds": 2},
        "channels": {"DEV": channel},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
        "dispatcher": {"workers": workers, "poll_interval_seconds": 0.02, "lease_seconds": lease_seconds,
                       "channel_timeout_seconds": 1.0},
        "sinks": [],
        # One key file for every worker (and for agents the test builds from this dict).
        "otp": {"key_file": str(outbox.parent / "otpagent.key")},
    }


class Fleet:
    """``count`` worker processes, started together, stopped (or killed) by the test."""

    def __init__(self, tmp_path: Path, schema: str, count: int, **options: Any) -> None:
        self.tmp_path = tmp_path
        self.outboxes = [tmp_path / f"outbox-{i}.jsonl" for i in range(count)]
        self.configs = []
        for i, outbox in enumerate(self.outboxes):
            path = tmp_path / f"worker-{i}.json"
            path.write_text(json.dumps(fleet_config(schema, outbox, **options)))
            self.configs.append(path)
        self.procs: list[subprocess.Popen[bytes]] = []

    def config(self, i: int = 0) -> dict[str, Any]:
        return dict(json.loads(self.configs[i].read_text()))

    def start(self) -> None:
        env = {**os.environ, "OTPAGENT_LOAD_PLUGINS": "console,postgres"}
        for i, path in enumerate(self.configs):
            log = (self.tmp_path / f"worker-{i}.log").open("wb")
            self.procs.append(subprocess.Popen([OTPAGENT, "--config", str(path), "run"], stdout=log,
                                               stderr=subprocess.STDOUT, env=env))

    def wait_running(self, timeout: float) -> bool:
        """Wait until every worker has opened its store and started its dispatcher."""
        deadline = time.monotonic() + timeout
        logs = [self.tmp_path / f"worker-{i}.log" for i in range(len(self.procs))]
        while time.monotonic() < deadline:
            self.assert_alive()
            if all(log.exists() and " running" in log.read_text(errors="replace") for log in logs):
                return True
            time.sleep(0.05)
        return False

    def entries(self, i: int | None = None) -> list[dict[str, Any]]:
        paths = self.outboxes if i is None else [self.outboxes[i]]
        out: list[dict[str, Any]] = []
        for path in paths:
            if path.exists():
                # Only complete lines: a worker may be half-way through appending the last one.
                lines = path.read_text().split("\n")[:-1]
                out += [json.loads(line) for line in lines if line.strip()]
        return out

    def delivered(self) -> Counter[str]:
        return Counter(e["message_id"] for e in self.entries())

    def wait_delivered(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(self.delivered()):
                return True
            self.assert_alive()
            time.sleep(0.2)
        return ids <= set(self.delivered())

    def assert_alive(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None and p.returncode != -signal.SIGKILL:
                log = (self.tmp_path / f"worker-{i}.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"worker {i} exited with {p.returncode}:\n{log}")

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
