"""The dispatcher's worker threads, and a watchdog that abandons calls which overrun a deadline.

Python cannot kill a thread. When plugin code hangs (a provider SDK stuck in a read without a
timeout), the only safe move is the one task queues make with hard time limits: leave the
thread behind, let a new thread take its slot, and make sure that whatever the stuck call
returns later is ignored. This module does that without a thread hop per call: the worker
calls the plugin itself and only registers a deadline before (:meth:`WorkerPool.watch`, one
dict insert) and claims the outcome after (:meth:`WorkerPool.finish`, one dict pop); one
watchdog thread looks at the deadlines of the calls in flight (at most one per worker).

Claiming the outcome is a race decided by that pop, which is atomic: whoever removes the
call's entry first owns its outcome. Either the worker finishes first and owns the result, or
the watchdog abandons first (under the pool's lock, marking the thread stuck in the same
step), runs the call's ``on_overrun`` (which records the timeout), and the late result is
discarded, so it can never overwrite what was recorded, even when this process has meanwhile
claimed the same message again.

Abandoned threads are bounded: beyond ``max_abandoned`` stuck threads the pool stops replacing
them (and says so), so a plugin that hangs on every call cannot grow the process without limit.
A stuck thread whose call finally returns rejoins the pool if the pool is short of workers,
and otherwise ends. Stopping the pool never waits for a stuck thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable

from otpagent.logs import get_logger

__all__ = ["Watch", "WorkerPool"]

log = get_logger("otpagent.workerpool")

class _Worker:
    __slots__ = ("abandoned", "name", "thread")

    def __init__(self, name: str) -> None:
        self.name = name
        self.abandoned = False
        self.thread: threading.Thread | None = None


class Watch:
    """One call under a deadline (see :meth:`WorkerPool.watch`)."""

    __slots__ = ("deadline", "on_overrun", "worker")

    def __init__(self, deadline: float, on_overrun: Callable[[], None], worker: _Worker | None) -> None:
        self.deadline = deadline
        self.on_overrun = on_overrun
        self.worker = worker


class WorkerPool:
    """``size`` threads running submitted tasks, with slots reserved ahead by one producer.

    Capacity is counted in slots: ``live_workers`` usable threads, of which ``busy`` have a
    task (queued or running); the producer (the claimer) ``reserve``s idle slots, fetches at
    most that much work, ``submit``s it and ``unreserve``s the rest.
    """

    def __init__(self, size: int, *, name: str = "otpagent-worker", max_abandoned: int | None = None,
                 clock: Callable[[], float] = time.monotonic, tick: float = 1.0) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.size = size
        self.name = name
        self.max_abandoned = size if max_abandoned is None else max_abandoned
        self.clock = clock
        self.tick = tick
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the producer and stop() wait here
        #: Tasks for the workers (None: a worker should end). A C queue: the hand-off to an
        #: idle worker costs no Python-level condition wait.
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._workers: set[_Worker] = set()
        self._stuck: set[_Worker] = set()
        #: The calls in flight under a deadline. Inserted and popped without the lock (each
        #: a single atomic dict operation); the watchdog pops under the lock (see ``check``).
        self._watches: dict[Watch, bool] = {}
        self._busy = 0
        self._reserved = 0
        self._stopping = False
        self._started = False
        self._numbers = itertools.count(1)
        self._local = threading.local()
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def live_workers(self) -> int:
        """Threads that can take work (stuck threads excluded)."""
        return len(self._workers)

    @property
    def abandoned(self) -> int:
        """Threads left behind in a call that overran its deadline and has not returned yet."""
        return len(self._stuck)

    @property
    def busy(self) -> int:
        """Tasks submitted and not yet finished (an abandoned task counts until its
        ``on_overrun`` has run)."""
        return self._busy

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for _ in range(self.size):
                self._spawn()
        self._watchdog = threading.Thread(target=self._watch_loop, name=f"{self.name}-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Run what was submitted, then end the threads; True when everything finished.

        A call that overruns its deadline meanwhile is abandoned as usual, so this returns
        at the latest one deadline after the last task started; stuck threads are not waited
        for (they are daemon threads and end when their call returns).
        """
        with self._lock:
            self._stopping = True
            # With no live worker left (all stuck, over the cap) queued tasks cannot run: their
            # messages go back to the queue when their leases expire.
            self._changed.wait_for(
                lambda: self._busy == 0 or (not self._workers and self._busy == self._tasks.qsize()), timeout)
            drained = self._busy == 0
        self._watch_stop.set()  # no more replacements from here on
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout)
        with self._lock:
            workers = [w.thread for w in self._workers if w.thread is not None]
        for _ in workers:
            self._tasks.put(None)
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return drained

    # -- capacity --------------------------------------------------------------------------
    def reserve(self, timeout: float, *, want: int = 1, gather: float = 0.0) -> int:
        """Wait up to ``timeout`` for idle slots; reserve and return all of them (0: none).

        With ``want``: when fewer slots than that are idle while others are busy, wait up to
        ``gather`` seconds more for ``want`` of them, so that under load the producer fetches
        work in batches rather than one slot at a time (one claim, not several).
        """
        with self._lock:
            idle = self._changed.wait_for(lambda: self._idle() > 0 or self._stopping, timeout)
            if not idle or self._stopping:
                return 0
            if self._idle() < want and self._busy > 0 and gather > 0:
                self._changed.wait_for(lambda: self._idle() >= want or self._busy == 0 or self._stopping, gather)
                if self._stopping:
                    return 0
            free = self._idle()
            self._reserved += free
            return free

    def unreserve(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._reserved -= count
            self._changed.notify_all()

    def submit(self, task: Callable[[], None]) -> None:
        """Queue ``task`` in a slot reserved earlier."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            self._busy += 1
        self._tasks.put(task)

    def _idle(self) -> int:
        return len(self._workers) - self._busy - self._reserved

    # -- deadlines -------------------------------------------------------------------------
    def watch(self, seconds: float, on_overrun: Callable[[], None]) -> Watch:
        """Put the call about to be made on this thread under a deadline ``seconds`` away.

        If the call has not :meth:`finish`-ed by then, the watchdog abandons it: it runs
        ``on_overrun`` (on the watchdog thread) and gives this thread's slot to a new one.
        """
        w = Watch(self.clock() + seconds, on_overrun, getattr(self._local, "worker", None))
        self._watches[w] = True
        return w

    def finish(self, watch: Watch) -> bool:
        """Claim the call's outcome: True when it finished in time, False when it was
        abandoned (its outcome was already dealt with by ``on_overrun``: discard it)."""
        return self._watches.pop(watch, False)

    def check(self, now: float | None = None) -> int:
        """Abandon every watched call whose deadline has passed; returns how many."""
        now = self.clock() if now is None else now
        with self._lock:
            # Pop what expired: a call whose worker popped it first has finished in time. The
            # thread is marked stuck under the lock, before its worker loop (which checks under
            # the same lock) can go on from the call.
            expired = [w for w in self._watches.copy() if w.deadline <= now and self._watches.pop(w, False)]
            for w in expired:
                if w.worker is not None:
                    self._leave_behind(w.worker)
        for w in expired:
            try:
                w.on_overrun()
            except Exception:
                log.exception("overrun_handler_failed")
            if w.worker is not None:
                with self._lock:
                    self._busy -= 1  # the abandoned task no longer holds its slot
                    self._changed.notify_all()
        return len(expired)

    def _leave_behind(self, worker: _Worker) -> None:
        """(Under the lock.) ``worker`` is stuck in a call: replace it, up to the cap."""
        if worker.abandoned:
            return
        worker.abandoned = True
        self._workers.discard(worker)
        self._stuck.add(worker)
        if len(self._stuck) <= self.max_abandoned:  # also while stopping: the queue must drain
            replacement = self._spawn()
            log.warning("worker_abandoned", worker=worker.name, replaced_by=replacement.name,
                        abandoned_threads=len(self._stuck))
        else:
            log.error("worker_abandoned_not_replaced", worker=worker.name, abandoned_threads=len(self._stuck),
                      live_workers=len(self._workers), cap=self.max_abandoned,
                      why="too many threads are stuck in calls that never returned; a plugin hangs")

    def _watch_loop(self) -> None:
        while not self._watch_stop.is_set():
            now = self.clock()
            try:
                self.check(now)
            except Exception:  # the watchdog must outlive any surprise
                log.exception("watchdog_failed")
            earliest = min((w.deadline for w in self._watches.copy()), default=None)
            pause = self.tick if earliest is None else min(self.tick, earliest - now)
            self._watch_stop.wait(max(0.005, pause))

    # -- threads ---------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        """(Under the lock.) Start one more worker thread."""
        worker = _Worker(f"{self.name}-{next(self._numbers)}")
        worker.thread = threading.Thread(target=self._run, args=(worker,), name=worker.name, daemon=True)
        self._workers.add(worker)
        worker.thread.start()
        return worker

    def _run(self, worker: _Worker) -> None:
        self._local.worker = worker
        while True:
            task = self._tasks.get()
            if task is None:  # stop() ran everything submitted and asks this worker to end
                with self._lock:
                    self._workers.discard(worker)
                return
            try:
                task()
            except BaseException:  # a task must not take its thread down with it
                log.exception("worker_task_failed", worker=worker.name)
            with self._lock:
                if not worker.abandoned:
                    self._busy -= 1
                    self._changed.notify_all()
                    continue
                # This thread's call overran and was abandoned; it has returned at last.
                self._stuck.discard(worker)
                if self._stopping or len(self._workers) >= self.size:
                    return
                worker.abandoned = False
                self._workers.add(worker)
                self._changed.notify_all()
            log.info("abandoned_worker_rejoined", worker=worker.name)
