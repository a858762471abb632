"""Kill one of two worker processes with SIGKILL and watch its in-flight messages go out again.

Shared by the crash tests (which assert on what the code promises: lease deadlines, nothing
lost, duplicates only among the messages the dead worker held) and the ``recovery`` benchmark
part (which reports how long after the kill the last of those messages was sent, beside the
configured lease). Two real ``otpagent run`` processes share one store (SQLite file or
PostgreSQL schema); each writes what it "sends" to its own console outbox, with a simulated
provider latency so that the victim always has sends in flight when it dies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KillRun", "kill_one_of_two"]

OTPAGENT = str(Path(sys.executable).with_name("otpagent"))
_WORKER_ID = re.compile(r"otpagent worker (\S+) running")


@dataclass
class KillRun:
    """What happened around the kill (times are POSIX seconds)."""

    ids: list[str]
    lease_seconds: float
    victim_id: str
    #: The messages the victim held (``sending`` under its lease) when it died -> lease expiry.
    held: dict[str, float]
    killed_at: float
    victim_sent: Counter[str]
    survivor_sent: dict[str, list[float]]  # message id -> times the survivor sent it
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def delivered(self) -> Counter[str]:
        both = Counter(self.victim_sent)
        both.update({m: len(at) for m, at in self.survivor_sent.items()})
        return both

    @property
    def duplicates(self) -> set[str]:
        return {m for m, n in self.delivered.items() if n > 1}

    @property
    def recovery_seconds(self) -> float | None:
        """From the kill to the survivor's send of the last message the victim held."""
        times = [min(self.survivor_sent[m]) for m in self.held if m in self.survivor_sent]
        if not times or len(times) < len(self.held):
            return None
        return max(times) - self.killed_at


def kill_one_of_two(workdir: Path, storage: dict[str, Any], *, count: int = 200, latency_ms: float = 200.0,
                    workers: int = 4, dispatcher: dict[str, Any] | None = None, timeout: float = 120.0,
                    env: dict[str, str] | None = None, victim_latency_ms: float | None = None,
                    sent_before_kill: int = 10) -> KillRun:
    """Queue ``count`` messages, start two workers, SIGKILL the first while it is sending, and
    wait (up to ``timeout``) until the store shows every message sent.

    ``victim_latency_ms`` makes the first worker's sends slower than the survivor's: a wide
    window in which the kill finds sends in flight, however loaded the machine (tests use it;
    the benchmark keeps both alike)."""
    from otpagent import IntelligentOTPAgent

    outboxes = [workdir / f"outbox-{i}.jsonl" for i in range(2)]
    configs = []
    for i, outbox in enumerate(outboxes):
        latency = victim_latency_ms if i == 0 and victim_latency_ms is not None else latency_ms
        config = {
            "storage": storage,
            "channels": {"DEV": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(outbox),
                                 "latency_ms": latency}},
            "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
            "dispatcher": {"workers": workers, "poll_interval_seconds": 0.05, **(dispatcher or {})},
            "sinks": [],
        }
        path = workdir / f"worker-{i}.json"
        path.write_text(json.dumps(config))
        configs.append(path)
    with IntelligentOTPAgent(str(configs[0])) as producer:  # the workers' file: the same OTP key file
        lease_seconds = producer.config.dispatcher.lease_seconds
        ids = producer.send_bulk_messages([
            {"phone_number": f"+447700900{i % 1000:03d}", "content": f"crash run {i}", "priority": "HIGH"}
            for i in range(count)])
    reader = _Reader(storage)
    logs = [workdir / f"worker-{i}.log" for i in range(2)]
    procs = [_start(path, log, env) for path, log in zip(configs, logs, strict=True)]
    try:
        victim_id = _wait_for(lambda: _worker_id(logs[0]), 60, "the first worker did not start", procs, logs)
        _wait_for(lambda: _worker_id(logs[1]), 60, "the second worker did not start", procs, logs)
        # Kill mid-run: once the victim has sent a few and holds sends in flight right now.
        _wait_for(lambda: len(_entries(outboxes[0])) >= sent_before_kill and reader.held_by(victim_id), 60,
                  "the first worker never had sends in flight", procs, logs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        killed_at = time.time()
        held = reader.held_by(victim_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and reader.statuses().get("sent", 0) < count:
            _check_alive(procs[1:], logs[1:])
            time.sleep(0.1)
        statuses = reader.statuses()
    finally:
        _stop(procs)
        reader.close()
    survivor: dict[str, list[float]] = {}
    for entry in _entries(outboxes[1]):
        survivor.setdefault(entry["message_id"], []).append(entry["at"])
    victim = Counter(e["message_id"] for e in _entries(outboxes[0]))
    return KillRun(ids=ids, lease_seconds=lease_seconds, victim_id=victim_id, held=held, killed_at=killed_at,
                   victim_sent=victim, survivor_sent=survivor, statuses=statuses)


class _Reader:
    """Reads the store directly (one query each), so a snapshot right after the kill is quick."""

    def __init__(self, storage: dict[str, Any]) -> None:
        self.backend = storage.get("backend", "sqlite")
        if self.backend == "sqlite":
            self.conn: Any = sqlite3.connect(storage["path"], timeout=30)
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(storage["dsn"], autocommit=True,
                                        options=f"-c search_path={storage['schema']}")
            self.mark = "%s"

    def held_by(self, owner: str) -> dict[str, float]:
        rows = self.conn.execute(
            f"SELECT id, lease_expires_at FROM messages WHERE status = 'sending' AND lease_owner = {self.mark}",
            (owner,)).fetchall()
        return {str(r[0]): float(r[1]) for r in rows}

    def statuses(self) -> Counter[str]:
        rows = self.conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        return Counter({str(r[0]): int(r[1]) for r in rows})

    def close(self) -> None:
        self.conn.close()


def _start(config: Path, log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([OTPAGENT, "--config", str(config), "run"], stdout=out, stderr=subprocess.STDOUT,
                                env=env or dict(os.environ))


def _worker_id(log: Path) -> str | None:
    match = _WORKER_ID.search(log.read_text(errors="replace")) if log.exists() else None
    return match.group(1) if match else None


def _entries(outbox: Path) -> list[dict[str, Any]]:
    if not outbox.exists():
        return []
    lines = outbox.read_text().split("\n")[:-1]  # only complete lines
    return [json.loads(line) for line in lines if line.strip()]


def _wait_for(probe: Any, timeout: float, failure: str, procs: list[subprocess.Popen[bytes]],
              logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        _check_alive(procs, logs)
        time.sleep(0.02)
    raise RuntimeError(f"{failure}: {logs[0].read_text(errors='replace')[-1500:]}")


def _check_alive(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            raise RuntimeError(f"a worker exited with {proc.returncode}: {log.read_text(errors='replace')[-1500:]}")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
