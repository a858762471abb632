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

Slots are not threads. The pool has ``size`` slots (sends in flight at once) but starts only
``threads`` threads (4 by default): a message's own work holds the GIL, so more threads than
that only hand the interpreter back and forth (64 threads cost a quarter of the throughput of 4
on PostgreSQL). Threads are added when they are the limit, which is when they wait on a
provider: if a task queued at one check still waits ``grow_after`` seconds later while at least
half the threads are inside a watched call, the watchdog starts a thread for every waiting task,
up to ``size``. A burst of OTPs to a slow provider so gets every slot within milliseconds.
Threads beyond ``threads`` end after ``idle_seconds`` without work.
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

#: Threads a pool starts with (never more than its slots): enough to keep one interpreter busy
#: while some wait on a store or a provider, few enough not to fight over the GIL.
CORE_THREADS = 4
#: How long a queued task may wait, while the threads are in provider calls, before threads are added.
GROW_AFTER_SECONDS = 0.005
#: How long a thread beyond the core waits for work before it ends.
IDLE_SECONDS = 60.0

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
    """``size`` slots run by ``threads`` to ``size`` threads, reserved ahead by one producer.

    Capacity is counted in slots: ``size`` of them (less the stuck threads beyond the cap), of
    which ``busy`` have a task (queued or running); the producer (the claimer) ``reserve``s
    idle slots, fetches at most that much work, ``submit``s it and ``unreserve``s the rest.
    """

    def __init__(self, size: int, *, name: str = "otpagent-worker", max_abandoned: int | None = None,
                 clock: Callable[[], float] = time.monotonic, tick: float = 1.0, threads: int | None = None,
                 grow_after: float = GROW_AFTER_SECONDS, idle_seconds: float = IDLE_SECONDS) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.size = size
        #: Threads kept however idle (the core); more are started while tasks wait on blocked threads.
        self.core = min(size, CORE_THREADS if threads is None else max(1, threads))
        self.grow_after = grow_after
        self.idle_seconds = idle_seconds
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
        #: Tasks ever submitted, and (when tasks wait) a look taken at them: (time, submitted then).
        self._submitted = 0
        self._waiting_since: tuple[float, int] | None = None
        #: Threads started beyond the core so far (tests read it).
        self.grown = 0
        self._stopping = False
        self._started = False
        self._numbers = itertools.count(1)
        self._local = threading.local()
        self._watch_stop = threading.Event()
        #: Wakes the watchdog early: tasks wait for a thread, or the pool stops.
        self._watch_wake = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def live_workers(self) -> int:
        """Threads that can take work (stuck threads excluded)."""
        return len(self._workers)

    @property
    def slots(self) -> int:
        """Tasks that may be in hand at once: ``size``, less each stuck thread beyond the cap."""
        return self.size - max(0, len(self._stuck) - self.max_abandoned)

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
    def start(self, *, watchdog: bool = True) -> None:
        """Start the core threads and the watchdog (without it, the caller runs :meth:`check`)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            for _ in range(self.core):
                self._spawn()
        if not watchdog:
            return
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
        self._watch_wake.set()
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
            self._submitted += 1
            # More tasks than threads: let the watchdog look whether they wait on blocked threads.
            alert = self._busy > len(self._workers) and self._waiting_since is None
        self._tasks.put(task)
        if alert and not self._watch_wake.is_set():
            self._watch_wake.set()

    def _idle(self) -> int:
        return self.slots - self._busy - self._reserved

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
        """Abandon every watched call whose deadline has passed (returns how many), and add
        threads if tasks wait behind threads blocked in calls (see :meth:`_grow`)."""
        now = self.clock() if now is None else now
        with self._lock:
            self._grow(now)
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

    def _grow(self, now: float) -> None:
        """(Under the lock.) Start a thread for each waiting task if the threads are the limit.

        A task queued at the last look still waits when more tasks are unfinished than threads
        can run, not counting those submitted since. The threads are the limit when at least
        half of them are inside a watched call (a provider holds them); when they are busy with
        the messages' own work instead, more threads would only take turns at the interpreter.
        """
        live = len(self._workers)
        waiting = self._busy - live
        if waiting <= 0 or live >= self.slots:
            self._waiting_since = None
            return
        if self._waiting_since is None:
            self._waiting_since = (now, self._submitted)
            return
        since, submitted_then = self._waiting_since
        still_waiting = self._busy - (self._submitted - submitted_then) > live
        if not still_waiting:
            self._waiting_since = (now, self._submitted)
            return
        if now - since < self.grow_after:
            return
        if 2 * len(self._watches) < live:  # computing, for now: look again (the tasks still wait)
            self._waiting_since = (now, self._submitted)
            return
        self._waiting_since = None
        added = min(waiting, self.slots - live)
        for _ in range(added):
            self._spawn()
        self.grown += added
        log.debug("worker_threads_added", added=added, threads=live + added, waiting=waiting)

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
            self._watch_wake.clear()
            try:
                self.check(now)
            except Exception:  # the watchdog must outlive any surprise
                log.exception("watchdog_failed")
            earliest = min((w.deadline for w in self._watches.copy()), default=None)
            pause = self.tick if earliest is None else min(self.tick, earliest - now)
            if self._waiting_since is not None:  # tasks wait: look again when they may need threads
                pause = min(pause, self.grow_after)
            self._watch_wake.wait(max(0.001, pause))

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
            try:  # a thread beyond the core ends when it finds no work for a while
                task = self._tasks.get() if len(self._workers) <= self.core else self._tasks.get(
                    timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if len(self._workers) > self.core:
                        self._workers.discard(worker)
                        return
                continue
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
                if self._stopping or len(self._workers) >= self.core:
                    return
                worker.abandoned = False
                self._workers.add(worker)
                self._changed.notify_all()
            log.info("abandoned_worker_rejoined", worker=worker.name)
