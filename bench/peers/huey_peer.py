"""huey on SQLite: ``SqliteHuey(fsync=True)`` (``PRAGMA synchronous=FULL``, WAL), a no-op task.

The consumer is huey's own ``Consumer`` with its defaults (what ``huey_consumer`` runs) except
the worker count: thread workers that poll the queue (0.1 s first, backing off 1.15x to 10 s
while it stays empty). Results are not stored (the task returns None, which huey skips).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bench.peers.base import Gate, JobLog, Payload, PeerDriver, Place, Producer

__all__ = ["HueyPeer"]

#: Worker threads in the one consumer process (huey's default is 1; they share one SQLite
#: connection behind a lock, so more threads mostly wait for each other).
WORKERS = 4


def _huey(place: Place, job: JobLog | None = None, *, fsync: bool = True) -> tuple[Any, Any]:
    """(the huey instance, its no-op task) on the place's database file."""
    from huey import SqliteHuey

    huey = SqliteHuey(place.tag, filename=str(place.path / "huey.db"), fsync=fsync)

    def noop(payload: Payload) -> None:
        if job is not None:
            job.ran(payload)

    return huey, huey.task(name="noop")(noop)


class _Producer(Producer):
    def __init__(self, place: Place) -> None:
        self._place = place
        self._huey, self._task = _huey(place)

    async def send(self, payload: Payload) -> None:
        self._task(payload)  # enqueues: one INSERT in its own fsynced transaction

    async def fill(self, jobs: list[Payload]) -> None:
        """huey has no batch enqueue: the same rows its ``enqueue`` writes, in one transaction."""
        rows = [(self._place.tag, self._huey.serialize_task(self._task.s(job)), 0.0) for job in jobs]
        with sqlite3.connect(self._place.path / "huey.db", timeout=30) as conn:
            conn.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)

    async def close(self) -> None:
        self._huey.storage.close()


class HueyPeer(PeerDriver):
    name = "huey"
    backend = "SQLite"
    distribution = "huey"
    workers = (f"1 process: the huey consumer with {WORKERS} thread workers (default 1), polling 0.1 s "
               "backing off to 10 s when idle (the defaults)")
    guarantee = ("`SqliteHuey(fsync=True)`: WAL, `synchronous=FULL`; a worker deletes the task from the "
                 "queue in the same transaction that reads it, then runs it: a crash mid-task loses it "
                 "(at-most-once)")

    def prepare(self, place: Place) -> None:
        huey, _ = _huey(place)  # creates the tables
        huey.storage.close()

    def _size(self, place: Place) -> int:
        with sqlite3.connect(f"file:{place.path / 'huey.db'}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute("SELECT count(*) FROM task WHERE queue = ?", (place.tag,)).fetchone()
        return int(row[0]) if row else 0

    def pending(self, place: Place) -> int:
        return self._size(place)

    def producer(self, place: Place) -> Producer:
        return _Producer(place)

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        huey, _ = _huey(place, job)
        consumer = huey.create_consumer(workers=WORKERS, worker_type="thread")
        gate()
        consumer.run()  # installs huey's own SIGTERM/SIGINT handling and returns when stopped
