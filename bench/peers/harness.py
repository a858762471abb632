"""Measuring one peer the same way as every other: a pre-filled queue, enqueue calls, latency.

- :func:`processing`: fill the queue (not timed), start the worker processes and wait until
  each has built its consumer and said ``ready``; then say ``go`` to all and run the clock
  until their job logs have counted every job *and* the queue itself shows none left
  unacknowledged. CPU is read from ``/proc`` at go and at the end: the worker processes (and
  their children), plus on PostgreSQL the backends serving them.
- :func:`enqueue_rate`: a child process enqueues, one per call or in batches.
- :func:`cross_latency`: one worker process running, another process enqueueing at a steady
  rate with the call's start time in each job; the worker's job log says when each ran.

Every wait is bounded by a deadline; every child is stopped (SIGTERM, then SIGKILL) and every
place cleaned up, whatever happens.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.common import Context, child_env
from bench.peers import load
from bench.peers.base import JobLog, PeerDriver, Place
from bench.peers.cpu import BackendCpu, process_tree_cpu
from bench.peers.pg_schema import DSN

__all__ = ["Processing", "cross_latency", "enqueue_rate", "processing"]

CHILD = [sys.executable, "-m", "bench.peers.child"]
#: py-spy (``pip install py-spy``) as the profiles in docs/benchmarks.md were taken: collapsed
#: stacks of the threads holding the GIL, 200 samples a second, without pausing the process.
SPY = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--gil", "--nonblocking",
       "--rate", "200"]
ENV = {"OTPAGENT_LOAD_PLUGINS": "console,postgres", "PYTHONUNBUFFERED": "1"}


@dataclass
class Processing:
    """One run of a pre-filled queue through ``processes`` worker processes."""

    count: int
    ran: int
    seconds: float
    worker_cpu: float
    server_cpu: float | None
    finished: int | None
    pending: int

    @property
    def rate(self) -> float:
        return min(self.ran, self.count) / self.seconds if self.seconds > 0 else 0.0

    def cpu_us(self) -> tuple[float, float | None]:
        """(worker, server) CPU microseconds per message."""
        done = max(1, min(self.ran, self.count))
        return self.worker_cpu / done * 1e6, None if self.server_cpu is None else self.server_cpu / done * 1e6

    def problems(self) -> str:
        """What went short of "every job ran once and was acknowledged", or ""."""
        out = []
        if self.ran < self.count:
            out.append(f"only {self.ran:,}/{self.count:,} ran within the time budget")
        elif self.ran > self.count:
            out.append(f"{self.ran - self.count:,} jobs ran twice")
        if self.pending:
            out.append(f"{self.pending:,} still unacknowledged")
        if self.finished is not None and self.finished != self.count:
            out.append(f"{self.finished:,}/{self.count:,} recorded done")
        return "; ".join(out)


@contextmanager
def place_for(peer: PeerDriver, ctx: Context) -> Iterator[Place]:
    """A fresh place (schema, directory, key prefix) for one measurement, removed afterwards."""
    tag = f"bench_{uuid.uuid4().hex[:12]}"
    workdir = ctx.workdir / f"peer-{tag}"
    workdir.mkdir(parents=True)
    place = Place(tag=tag, workdir=str(workdir))
    try:
        peer.prepare(place)
        yield place
    finally:
        try:
            peer.cleanup(place)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def run_child(key: str, place: Place, role: str, *args: object, timeout: float,
              profile: Path | None = None) -> dict[str, Any]:
    """Run a producer-side child to its end; its last JSON line on stdout is its result. With
    ``profile``, py-spy samples it (collapsed stacks, GIL-holding only) into that file."""
    command = [*CHILD, role, key, place.dumps(), *(str(a) for a in args)]
    if profile is not None:
        command = [*SPY, "-o", str(profile), "--", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env(**ENV),
                                check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{key} {role}: no result within {timeout:.0f} s") from exc
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]  # py-spy talks on stdout too
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{key} {role} exited {result.returncode}: {result.stderr[-1500:]}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


class Workers:
    """``processes`` worker children of one peer, gated: built first, released together."""

    def __init__(self, key: str, place: Place, processes: int, *, latency: bool) -> None:
        self.key = key
        self.place = place
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[queue.Queue[str]] = []
        self.logs = [place.path / f"worker-{i}.log" for i in range(processes)]
        try:
            for index, log in enumerate(self.logs):
                with log.open("w") as err:
                    proc = subprocess.Popen([*CHILD, "work", key, place.dumps(), str(index), "1" if latency else "0"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                            env=child_env(**ENV))
                self.procs.append(proc)
                lines: queue.Queue[str] = queue.Queue()
                assert proc.stdout is not None
                threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
                self.lines.append(lines)
        except BaseException:
            self.stop()  # the ones already started
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for index, lines in enumerate(self.lines):
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self.procs[index].poll() is not None:
                    raise RuntimeError(f"{self.key} worker {index} did not get ready: {self.tail(index)}")
                try:
                    if lines.get(timeout=min(left, 0.2)).strip() == "ready":
                        break
                except queue.Empty:
                    continue

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def count(self) -> int:
        return sum(JobLog.read_count(self.place.path / f"count-{i}.txt") for i in range(len(self.procs)))

    def cpu(self) -> float:
        return sum(process_tree_cpu(p.pid) for p in self.procs)

    def spy(self, directory: Path) -> list[subprocess.Popen[bytes]]:
        """py-spy on each worker, writing ``<directory>/<key>-<index>.txt`` when interrupted."""
        directory.mkdir(parents=True, exist_ok=True)
        return [subprocess.Popen([*SPY, "--pid", str(p.pid), "-o", str(directory / f"{self.key}-{i}.txt")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for i, p in enumerate(self.procs)]

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise RuntimeError(f"{self.key} worker {index} exited {proc.returncode}: {self.tail(index)}")

    def tail(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _poll(predicate: Any, deadline: float, interval: float) -> bool:
    while time.perf_counter() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def processing(key: str, ctx: Context, count: int, processes: int, budget: float,
               profile: Path | None = None) -> Processing:
    """``count`` jobs queued first, then ``processes`` worker processes released together.
    With ``profile`` (a directory), py-spy samples each worker from go to the end."""
    peer = load(key)
    with place_for(peer, ctx) as place:
        run_child(key, place, "fill", count, timeout=budget + 120)
        queued = peer.pending(place)
        if queued != count:
            raise RuntimeError(f"{key}: the fill queued {queued:,} of {count:,}")
        with Workers(key, place, processes, latency=False) as workers:
            workers.wait_ready(90)
            backends = BackendCpu(DSN, peer.app_name(place)) if peer.backend == "PostgreSQL" else None
            spies: list[subprocess.Popen[bytes]] = []
            try:
                if backends is not None:
                    backends.begin()
                cpu_start = workers.cpu()
                start = time.perf_counter()
                workers.go()
                if profile is not None:
                    spies = workers.spy(profile)
                deadline = start + budget

                def all_ran() -> bool:
                    workers.check_alive()
                    return workers.count() >= count

                _poll(all_ran, deadline, 0.003)
                _poll(lambda: peer.pending(place) == 0, deadline, 0.01)
                seconds = time.perf_counter() - start
                worker_cpu = workers.cpu() - cpu_start
                server_cpu = backends.end()[0] if backends is not None else None
            finally:
                for spy in spies:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                    spy.wait(30)
                if backends is not None:
                    backends.close()
            ran = workers.count()
        return Processing(count=count, ran=ran, seconds=seconds, worker_cpu=worker_cpu, server_cpu=server_cpu,
                          finished=peer.finished(place), pending=peer.pending(place))


def enqueue_rate(key: str, ctx: Context, count: int, batch: int, budget: float,
                 profile: Path | None = None) -> float:
    """Jobs per second a fresh process enqueues, one per call (``batch`` 1) or in batches."""
    peer = load(key)
    with place_for(peer, ctx) as place:
        result = run_child(key, place, "enqueue", count, batch, budget, timeout=budget + 90, profile=profile)
        queued = peer.pending(place)
    expected = int(result["done"]) + batch  # the warm-up call's jobs too
    if queued != expected:
        raise RuntimeError(f"{key}: {queued:,} jobs queued after {expected:,} enqueued")
    return float(result["done"]) / float(result["seconds"]) if result["seconds"] else 0.0


def cross_latency(key: str, ctx: Context, rate: float, seconds: float) -> tuple[list[float], int]:
    """(milliseconds from each enqueue call to its job running, how many were sent): the
    enqueuer and the worker are separate processes, the stream steady at ``rate`` per second."""
    peer = load(key)
    with place_for(peer, ctx) as place, Workers(key, place, 1, latency=True) as workers:
        workers.wait_ready(90)
        workers.go()
        time.sleep(0.5)  # let the worker reach its idle wait, as a running worker would be
        workers.check_alive()
        sent = int(run_child(key, place, "produce", rate, seconds, timeout=seconds + 90)["done"])
        _poll(lambda: len(peer.latencies(place)) >= sent, time.perf_counter() + 30 + seconds, 0.05)
        latencies = peer.latencies(place)
    return latencies, sent
