"""The worker pool's promises: capacity kept after abandonment, a bounded number of stuck threads,
exactly one owner for each call's outcome, and a stop that never waits for a stuck thread.

Deadlines run on a clock the test moves; the test calls ``check`` itself (the watchdog thread
runs too, on the same clock, and finds nothing more to do; the tests of adding threads run
without it, since when it looks decides what it sees). Assertions are on counts and recorded
outcomes, never on durations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from otpagent.workerpool import WorkerPool
from tests.conftest import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so no thread stays stuck after the test."""
    event = threading.Event()
    yield event
    event.set()


def _stuck_task(pool: WorkerPool, release: threading.Event, entered: threading.Semaphore,
                outcomes: list[str], name: str) -> None:
    def overrun() -> None:
        outcomes.append(f"{name}: timed out")

    watch = pool.watch(5.0, overrun)
    entered.release()
    release.wait()  # a call that never returns until the test lets it
    if pool.finish(watch):
        outcomes.append(f"{name}: finished")
    else:
        outcomes.append(f"{name}: late result discarded")


def test_an_abandoned_call_is_recorded_once_and_its_slot_goes_to_a_new_thread(release):
    clock, outcomes, entered = Clock(), [], threading.Semaphore(0)
    pool = WorkerPool(2, clock=clock, tick=0.05)
    pool.start()
    assert pool.reserve(1.0) == 2
    pool.submit(lambda: _stuck_task(pool, release, entered, outcomes, "a"))
    pool.unreserve(1)
    assert entered.acquire(timeout=10)
    assert pool.busy == 1

    clock.now += 5.0
    pool.check()
    assert wait_for(lambda: outcomes == ["a: timed out"], 10)
    assert wait_for(lambda: pool.busy == 0, 10)
    assert (pool.live_workers, pool.abandoned) == (2, 1)
    assert pool.reserve(1.0) == 2, "both slots are usable again while the stuck thread waits"
    pool.unreserve(2)

    release.set()
    assert wait_for(lambda: pool.abandoned == 0, 10)
    assert outcomes == ["a: timed out", "a: late result discarded"]
    assert pool.live_workers == 2, "the pool was whole: the returning thread left"
    assert pool.stop(10)


def test_a_call_that_finishes_in_time_owns_its_outcome():
    clock = Clock()
    pool = WorkerPool(1, clock=clock)
    called: list[str] = []
    watch = pool.watch(5.0, lambda: called.append("overrun"))
    assert pool.finish(watch) is True
    clock.now += 60.0
    assert pool.check() == 0
    assert called == []


def test_beyond_the_cap_stuck_threads_are_not_replaced_and_a_returning_one_rejoins(release, caplog):
    clock, outcomes, entered = Clock(), [], threading.Semaphore(0)
    pool = WorkerPool(2, clock=clock, tick=0.05, max_abandoned=1)
    pool.start()
    assert pool.reserve(1.0) == 2
    for name in ("a", "b"):
        pool.submit(lambda name=name: _stuck_task(pool, release, entered, outcomes, name))
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)

    clock.now += 5.0
    pool.check()
    assert wait_for(lambda: sorted(outcomes) == ["a: timed out", "b: timed out"], 10)
    assert (pool.live_workers, pool.abandoned) == (1, 2), "one replaced (the cap is 1), the other not"
    assert "worker_abandoned_not_replaced" in caplog.text

    release.set()
    assert wait_for(lambda: pool.abandoned == 0, 10)
    assert pool.live_workers == 2, "a returning thread filled the missing slot; the other left"
    assert pool.stop(10)


def test_stop_runs_what_was_queued_and_does_not_wait_for_a_stuck_thread(release):
    outcomes: list[str] = []
    entered = threading.Semaphore(0)
    pool = WorkerPool(1, tick=0.01)  # real clock: the watchdog abandons the stuck call itself
    pool.start()
    assert pool.reserve(1.0) == 1

    def stuck() -> None:
        watch = pool.watch(0.05, lambda: outcomes.append("timed out"))
        entered.release()
        release.wait()
        pool.finish(watch)

    pool.submit(stuck)
    pool.submit(lambda: outcomes.append("queued task ran"))  # over-subscribed on purpose
    assert entered.acquire(timeout=10)

    assert pool.stop(60) is True
    assert sorted(outcomes) == ["queued task ran", "timed out"], "the replacement thread drained the queue"
    assert pool.abandoned == 1


def test_under_load_the_producer_gathers_slots_for_one_batch_instead_of_taking_them_one_by_one():
    pool = WorkerPool(4, tick=0.05)
    pool.start()
    gates = [threading.Event() for _ in range(3)]
    try:
        assert pool.reserve(1.0) == 4
        for gate in gates:
            pool.submit(gate.wait)
        pool.unreserve(1)  # one idle slot, three busy
        got: list[int] = []
        producer = threading.Thread(target=lambda: got.append(pool.reserve(1.0, want=3, gather=30.0)))
        producer.start()
        gates[0].set()
        gates[1].set()  # two more slots come free while the producer gathers
        producer.join(30)

        assert got == [3]
        pool.unreserve(3)
    finally:
        for gate in gates:
            gate.set()
        pool.stop(10)


def _in_call(pool: WorkerPool, release: threading.Event, entered: threading.Semaphore) -> None:
    """A task that waits on a provider: inside a watched call until the test releases it."""
    watch = pool.watch(600.0, lambda: None)
    entered.release()
    release.wait()
    pool.finish(watch)


def _computing(release: threading.Event, entered: threading.Semaphore) -> None:
    """A task busy with its own work (no watched call) until the test releases it."""
    entered.release()
    release.wait()


def _growing_pool(slots: int, threads: int, **options: float) -> tuple[Clock, threading.Semaphore, WorkerPool]:
    """A started pool on a test clock, without its watchdog: the test looks itself (``check``)."""
    clock = Clock()
    pool = WorkerPool(slots, clock=clock, tick=600.0, threads=threads, grow_after=0.5, **options)
    pool.start(watchdog=False)
    return clock, threading.Semaphore(0), pool


def _submit(pool: WorkerPool, tasks: list) -> None:
    assert pool.reserve(1.0) >= len(tasks)
    for task in tasks:
        pool.submit(task)
    pool.unreserve(pool.size - pool.busy)


def test_threads_start_at_the_core_and_grow_when_tasks_wait_behind_calls_to_a_provider(release):
    clock, entered, pool = _growing_pool(8, 2)
    try:
        assert pool.live_workers == 2, "two threads for eight slots, to begin with"
        _submit(pool, [lambda: _in_call(pool, release, entered) for _ in range(6)])
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        assert not entered.acquire(timeout=0.05), "both threads are held; four tasks wait"

        pool.check()  # the watchdog may have looked first: either way, a look at t0
        assert pool.live_workers == 2
        clock.now += 0.5
        pool.check()
        assert pool.live_workers == 6, "a thread for each waiting task"
        assert all(entered.acquire(timeout=10) for _ in range(4)), "every task is in its call"
        assert pool.grown == 4
        assert pool.reserve(1.0) == 2, "slots, not threads, bound the producer"
        pool.unreserve(2)
    finally:
        release.set()
        assert pool.stop(10)


def test_threads_busy_with_their_own_work_are_not_multiplied(release):
    clock, entered, pool = _growing_pool(8, 2)
    try:
        _submit(pool, [lambda: _computing(release, entered) for _ in range(6)])
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        for _ in range(3):
            pool.check()
            clock.now += 0.5
        assert (pool.live_workers, pool.grown) == (2, 0), "more threads would only take turns at the interpreter"
    finally:
        release.set()
        assert pool.stop(10)


def test_threads_that_were_computing_get_help_once_they_wait_on_a_provider(release):
    clock, entered, pool = _growing_pool(8, 2)
    to_call = threading.Event()

    def compute_then_call() -> None:
        entered.release()
        to_call.wait()
        _in_call(pool, release, entered)

    try:
        _submit(pool, [compute_then_call for _ in range(6)])
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        pool.check()
        clock.now += 0.5
        pool.check()
        assert pool.live_workers == 2, "computing: no threads added"
        to_call.set()
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10), "both threads now wait on the provider"
        clock.now += 0.5
        pool.check()
        assert pool.live_workers == 6, "the tasks waiting since the last look get threads at once"
    finally:
        to_call.set()
        release.set()
        assert pool.stop(10)


def test_a_task_queued_since_the_last_look_does_not_add_threads(release):
    clock, entered, pool = _growing_pool(8, 2)
    first = threading.Event()
    try:
        _submit(pool, [lambda: _in_call(pool, first, entered)] * 2 + [lambda: _in_call(pool, release, entered)])
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        pool.check()  # t0: the third task waits
        first.set()  # the two calls return and the third task is taken
        assert entered.acquire(timeout=10)
        assert wait_for(lambda: pool.busy == 1, 10)
        _submit(pool, [lambda: _in_call(pool, release, entered)] * 2)  # one taken, one waits
        assert entered.acquire(timeout=10)
        clock.now += 0.5
        pool.check()
        assert (pool.busy, pool.live_workers, pool.grown) == (3, 2, 0), \
            "the waiting task was queued after t0: it has not waited long enough to need a thread"
        clock.now += 0.5
        pool.check()
        assert wait_for(lambda: pool.live_workers == 3, 10), "now it has"
        assert entered.acquire(timeout=10)
    finally:
        first.set()
        release.set()
        assert pool.stop(10)


def test_threads_beyond_the_core_end_when_idle(release):
    clock, entered, pool = _growing_pool(4, 1, idle_seconds=0.05)
    try:
        _submit(pool, [lambda: _in_call(pool, release, entered) for _ in range(4)])
        assert entered.acquire(timeout=10)
        pool.check()
        clock.now += 0.5
        pool.check()
        assert all(entered.acquire(timeout=10) for _ in range(3))
        assert pool.live_workers == 4
        release.set()
        assert wait_for(lambda: pool.busy == 0 and pool.live_workers == 1, 10), "back to the core"
        assert pool.reserve(1.0) == 4, "every slot is still there"
        pool.unreserve(4)
    finally:
        assert pool.stop(10)
