"""The group commit queue on its own: who leads, who waits, and that nobody is left behind."""

from __future__ import annotations

import threading
import time

import pytest

from otpagent.storage import batching
from otpagent.storage.batching import CommitQueue


def test_writes_queued_behind_a_leader_form_one_group_and_every_caller_returns() -> None:
    groups: list[list[int]] = []
    queue: CommitQueue[int] = CommitQueue(lambda group: groups.append(sorted(group)))
    threads = [threading.Thread(target=queue.run, args=(n,)) for n in range(20)]
    with queue.held():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while queue.queued < 20 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert queue.queued == 20
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert groups == [list(range(20))]


def test_a_lone_write_commits_at_once_and_leaves_no_leader_behind() -> None:
    groups: list[list[str]] = []
    queue: CommitQueue[str] = CommitQueue(groups.append)
    queue.run("a")
    queue.run("b")
    assert groups == [["a"], ["b"]]
    with queue.held():  # would raise if a leader were still marked as writing
        pass


def test_a_commit_that_raises_releases_the_group_and_hands_the_lead_on() -> None:
    class Interrupted(BaseException):
        pass

    calls: list[list[str]] = []

    def commit(group: list[str]) -> None:
        calls.append(group)
        if "boom" in group:
            raise Interrupted

    queue: CommitQueue[str] = CommitQueue(commit)
    with pytest.raises(Interrupted):
        queue.run("boom")
    queue.run("after")  # the lead was given up: this one commits on its own
    assert calls == [["boom"], ["after"]]


def test_many_threads_many_writes_each_committed_exactly_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def commit(group: list[int]) -> None:
        with lock:
            seen.extend(group)

    queue: CommitQueue[int] = CommitQueue(commit)

    def worker(base: int) -> None:
        for i in range(200):
            queue.run(base + i)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert sorted(seen) == sorted(k * 1000 + i for k in range(16) for i in range(200))


class Interrupted(BaseException):
    pass


def wait_queued(queue: CommitQueue[str], count: int) -> None:
    deadline = time.monotonic() + 10
    while queue.queued < count and time.monotonic() < deadline:
        time.sleep(0.002)
    assert queue.queued == count


def test_a_waiter_interrupted_as_it_is_handed_the_lead_passes_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C reaching a caller that waits (the main thread) must not leave the others waiting
    for a leader that is gone."""

    class InterruptedOnWake(batching._Ticket[str]):
        def __init__(self, write: str) -> None:
            super().__init__(write)
            if write == "interrupted":
                real = self.wake

                class Wake:
                    def acquire(self) -> bool:
                        real.acquire()
                        raise Interrupted

                    def release(self) -> None:
                        real.release()

                self.wake = Wake()  # type: ignore[assignment]

    monkeypatch.setattr(batching, "_Ticket", InterruptedOnWake)
    groups: list[list[str]] = []
    queue: CommitQueue[str] = CommitQueue(lambda group: groups.append(sorted(group)))
    raised: list[BaseException] = []

    def interrupted_caller() -> None:
        try:
            queue.run("interrupted")
        except Interrupted as exc:
            raised.append(exc)

    first = threading.Thread(target=interrupted_caller)
    second = threading.Thread(target=queue.run, args=("waiting",))
    with queue.held():
        first.start()
        wait_queued(queue, 1)
        second.start()
        wait_queued(queue, 2)
    for thread in (first, second):
        thread.join(10)
        assert not thread.is_alive(), "a caller was left waiting"
    assert len(raised) == 1
    assert groups == [["waiting"]], "the interrupted caller's write was taken back, the other one led"
    queue.run("later")
    assert groups[-1] == ["later"]


def test_writes_run_together_share_one_group_in_order_even_behind_a_leader() -> None:
    groups: list[list[str]] = []
    queue: CommitQueue[str] = CommitQueue(groups.append)
    queue.run_many(["a", "b", "c"])
    assert groups == [["a", "b", "c"]]

    batch = threading.Thread(target=queue.run_many, args=(["x", "y", "z"],))
    single = threading.Thread(target=queue.run, args=("s",))
    with queue.held():
        batch.start()
        deadline = time.monotonic() + 10
        while queue.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.002)
        single.start()
        while queue.queued < 4 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert queue.queued == 4
    for thread in (batch, single):
        thread.join(10)
        assert not thread.is_alive()
    assert groups[1] == ["x", "y", "z", "s"], "the batch leads the next group, in its order, with what queued after"
    queue.run_many([])
    assert len(groups) == 2, "an empty batch commits nothing"


def test_writes_queued_while_a_lone_write_commits_are_the_next_group() -> None:
    groups: list[list[str]] = []
    committing, release = threading.Event(), threading.Event()

    def commit(group: list[str]) -> None:
        if group == ["lone"]:
            committing.set()
            assert release.wait(10)
        groups.append(sorted(group))

    queue: CommitQueue[str] = CommitQueue(commit)
    lone = threading.Thread(target=queue.run, args=("lone",))
    lone.start()
    assert committing.wait(10)  # the lone write leads at once, with nothing else
    others = [threading.Thread(target=queue.run, args=(name,)) for name in ("b", "c", "d")]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while queue.queued < 3 and time.monotonic() < deadline:
        time.sleep(0.002)
    assert queue.queued == 3  # they wait behind it
    release.set()
    for thread in [lone, *others]:
        thread.join(10)
        assert not thread.is_alive()
    assert groups == [["lone"], ["b", "c", "d"]]
