"""What every peer driver shares: where a measurement lives, the driver interface, the job log.

A *peer* is a job queue people would pick instead of otpagent (PgQueuer, procrastinate, huey,
Dramatiq, Celery), or otpagent itself driven the same way, so both sides of every ratio go
through the same harness. A driver is used from two sides:

- the bench process (``bench/peers/harness.py``) prepares its :class:`Place` (a schema, a
  file, a Redis key prefix), asks how much enqueued work is not yet done and acknowledged,
  and cleans up;
- child processes (``bench/peers/child.py``) open a :class:`Producer` to enqueue, or run a
  worker whose no-op job calls :meth:`JobLog.ran`.

Every default here is declared, so reading this class tells what a driver may implement.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BODY",
    "JobLog",
    "Payload",
    "PeerDriver",
    "Place",
    "Producer",
    "Unsupported",
    "payloads",
]

#: What every job carries: a recipient, a body the size of a real notification, and the time
#: the enqueue call started (0 when the figure is not a latency).
Payload = dict[str, Any]
BODY = "Your parcel arrives today between 10:00 and 12:00."


def payloads(count: int, first: int = 0) -> list[Payload]:
    """``count`` distinct jobs (distinct recipients, as traffic to many people is)."""
    return [{"to": f"+4477{(first + i) % 100_000_000:08d}", "body": BODY, "t": 0.0} for i in range(count)]


class Unsupported(Exception):
    """The peer has no such operation (e.g. no batch enqueue); the figure is reported as n/a."""


@dataclass(frozen=True)
class Place:
    """Where one measurement's queue lives. ``tag`` is unique per measurement and names the
    PostgreSQL schema, the Redis key prefix and the queue, so nothing else is ever touched."""

    tag: str
    workdir: str

    @property
    def path(self) -> Path:
        return Path(self.workdir)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Place:
        return cls(**json.loads(text))


class Producer:
    """Enqueues jobs from a child process. Async, so async peers run their own calls without a
    loop hop per call; a sync peer's methods simply do their work (an await that never suspends
    costs well under a microsecond)."""

    async def open(self) -> None:
        """Connect (called once, inside the child's event loop)."""

    async def send(self, payload: Payload) -> None:
        """Enqueue one job, durably as the peer defines it, in one call."""
        raise NotImplementedError

    async def send_batch(self, batch: list[Payload]) -> None:
        """Enqueue a batch in one call; raises :class:`Unsupported` when the peer has none."""
        raise Unsupported("no batch enqueue")

    async def fill(self, jobs: list[Payload]) -> None:
        """Queue ``jobs`` as fast as the peer allows (setup, not measured)."""
        try:
            for start in range(0, len(jobs), 500):
                await self.send_batch(jobs[start:start + 500])
        except Unsupported:
            for job in jobs:
                await self.send(job)

    async def close(self) -> None:
        """Disconnect."""


class PeerDriver:
    """One peer: what it is (for the table and the docs) and how to drive it."""

    #: Shown in the table ("PgQueuer"); the key in ``bench.peers.PEERS``.
    name = ""
    #: Where its queue lives: "PostgreSQL", "SQLite" or "Redis".
    backend = ""
    #: The distribution whose installed version is printed beside the figures.
    distribution = ""
    #: What one worker process runs (threads, coroutines, prefetch), for the docs.
    workers = ""
    #: Durability setting and delivery guarantee, read from the peer's docs and source.
    guarantee = ""

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def installed(self) -> bool:
        return importlib.util.find_spec(self.distribution.replace("-", "_")) is not None

    def unavailable(self) -> str | None:
        """Why this peer cannot run here (not installed, server down), or None."""
        if not self.installed():
            return f"{self.distribution} is not installed (the bench sessions install the peers: nox -s bench)"
        return None

    # -- the bench process ---------------------------------------------------------------------
    def prepare(self, place: Place) -> None:
        """Create the place's queue (schema, tables), empty."""

    def pending(self, place: Place) -> int:
        """Jobs enqueued and not yet done *and acknowledged* (read from the queue itself)."""
        raise NotImplementedError

    def finished(self, place: Place) -> int | None:
        """Jobs the queue records as done, or None when it keeps no record of them."""
        return None

    def cleanup(self, place: Place) -> None:
        """Remove everything :meth:`prepare` and the run created (schema, keys, files)."""

    def app_name(self, place: Place) -> str:
        """The PostgreSQL ``application_name`` of this peer's connections (to find its backends)."""
        return place.tag

    def latencies(self, place: Place) -> list[float]:
        """Milliseconds from each enqueue call to its job running, from the worker's job log."""
        return JobLog.read_latencies(place.path / "latency.txt")

    # -- child processes -----------------------------------------------------------------------
    def producer(self, place: Place) -> Producer:
        raise NotImplementedError

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        """Build a worker process's queue consumer, call ``gate()`` (which returns when the
        bench says go), run until SIGTERM or SIGINT, then stop cleanly."""
        raise NotImplementedError


class Gate:
    """Tells the bench the worker is built, then blocks until it says go (a line on stdin)."""

    def __call__(self) -> None:
        import sys

        print("ready", flush=True)
        line = sys.stdin.readline()
        if line.strip() != "go":
            raise SystemExit("bench went away before go")


class JobLog:
    """What a worker's no-op job does: count itself, and for latency runs write when it ran.

    The count is written to a small file every few milliseconds by a thread, so the bench can
    stop its clock without asking the queue 50 times a second (it asks once at the end, to
    check the work was also acknowledged). Latency lines are ``t_enqueued t_ran`` (seconds,
    ``time.time()`` in both processes of the same machine), appended with one ``write``.
    """

    INTERVAL = 0.005

    def __init__(self, count_path: Path, latency_path: Path | None) -> None:
        self._count = 0
        self._lock = threading.Lock()
        self._external: Callable[[], int] | None = None
        self._count_fd = os.open(count_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._latency_fd = (os.open(latency_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                            if latency_path is not None else None)
        self.latency_path = latency_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, name="bench-joblog", daemon=True)
        self._thread.start()

    def ran(self, payload: Payload) -> None:
        """The no-op job: called by the peer's task function with its payload."""
        ran_at = time.time()
        with self._lock:
            self._count += 1
        started = payload.get("t") or 0.0
        if self._latency_fd is not None and started > 0:
            os.write(self._latency_fd, f"{started!r} {ran_at!r}\n".encode())

    def count_with(self, counter: Callable[[], int]) -> None:
        """Report ``counter()`` instead of the calls to :meth:`ran` (otpagent counts its own)."""
        self._external = counter

    @property
    def count(self) -> int:
        return self._external() if self._external is not None else self._count

    def _report(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._write()

    def _write(self) -> None:
        os.pwrite(self._count_fd, f"{self.count:>12}\n".encode(), 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self._write()
        os.close(self._count_fd)
        if self._latency_fd is not None:
            os.close(self._latency_fd)

    @staticmethod
    def read_count(path: Path) -> int:
        try:
            return int(path.read_bytes().strip() or 0)
        except (OSError, ValueError):
            return 0

    @staticmethod
    def read_latencies(path: Path) -> list[float]:
        if not path.exists():
            return []
        out = []
        for line in path.read_text().split("\n")[:-1]:  # complete lines only
            started, ran = line.split()
            out.append((float(ran) - float(started)) * 1000.0)
        return out
