"""CPU time read from ``/proc``: a worker process (with its children), PostgreSQL's backends,
and the whole machine.

CPU per message is the worker's CPU plus, on PostgreSQL, the server's CPU for the backends
serving that worker (found by ``application_name`` in ``pg_stat_activity``, read from
``/proc/<pid>/stat``; ``pg_stat_statements`` is not loaded on these machines). The server's
shared processes (WAL writer, checkpointer) are left out: they are not per connection.
Linux only, which is what the benchmarks run on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BackendCpu", "machine_busy", "process_tree_cpu"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds in user + system mode) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every live process descended from it (forked pool workers)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)], cpu[int(entry)] = stat
    total = 0.0
    for candidate, seconds in cpu.items():
        walk, steps = candidate, 0
        while walk not in (0, 1) and walk != pid and steps < 64:
            walk, steps = parents.get(walk, 0), steps + 1
        if walk == pid:
            total += seconds
    return total


class BackendCpu:
    """Samples the CPU of the PostgreSQL backends whose ``application_name`` is ``app_name``.

    A thread looks the backends up every ``interval`` seconds and keeps each one's latest CPU
    reading; :meth:`begin` takes the baseline and :meth:`end` returns the CPU spent since. A
    backend first seen after :meth:`begin` counts from zero (it was started during the run).
    """

    def __init__(self, dsn: str, app_name: str, interval: float = 0.2) -> None:
        import psycopg

        self._conn: Any = psycopg.connect(dsn, autocommit=True, application_name="otpagent-bench-cpu")
        self._app_name = app_name
        self._interval = interval
        self._latest: dict[int, float] = {}
        self._base: dict[int, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-backend-cpu", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        pids = [row[0] for row in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self._app_name,)).fetchall()]
        with self._lock:
            for pid in pids:
                stat = _stat(pid)
                if stat is not None:
                    self._latest[pid] = stat[1]

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def begin(self) -> None:
        self._sample()
        with self._lock:
            self._base = dict(self._latest)

    def end(self) -> tuple[float, int]:
        """(CPU seconds the backends spent since :meth:`begin`, how many backends were seen)."""
        self._sample()
        with self._lock:
            base = self._base or {}
            return sum(cpu - base.get(pid, 0.0) for pid, cpu in self._latest.items()), len(self._latest)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._conn.close()


def machine_busy() -> Callable[[], float]:
    """Start watching the machine's CPUs; the returned call gives the fraction of all of them
    busy since (from ``/proc/stat``; 0.0 where there is none)."""

    def sample() -> tuple[int, int]:
        try:
            with open("/proc/stat") as stat:
                values = [int(v) for v in stat.readline().split()[1:]]
        except OSError:
            return 0, 0
        return sum(values), values[3] + values[4]  # all, idle + iowait

    total, idle = sample()

    def busy() -> float:
        now_total, now_idle = sample()
        return 1.0 - (now_idle - idle) / (now_total - total) if now_total > total else 0.0

    return busy
