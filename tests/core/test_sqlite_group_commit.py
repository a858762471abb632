"""Group commit in the SQLite backend: concurrent writers share one transaction and one fsync.

Each test queues writes from several threads while the test holds the write lock, so every
piece is waiting when the lock is released and they are committed by one leader, together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otpagent.protocols import IdempotencyConflict
from otpagent.storage.sqlite import SqliteStorage
from otpagent.storage.sqlite_writer import _PendingWrite
from otpagent.testing import T0, issue, new

pytestmark = pytest.mark.timeout(60)


class Outcomes:
    """What each thread's call returned or raised."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, call: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.results[name] = call()
            except BaseException as exc:  # recorded for the test to inspect
                self.errors[name] = exc

        thread = threading.Thread(target=run, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(20)
            assert not thread.is_alive(), f"{thread.name} never finished"


def queued_behind_lock(storage: SqliteStorage, calls: dict[str, Callable[[], Any]],
                       meanwhile: Callable[[], object] | None = None) -> tuple[Outcomes, list[int]]:
    """Start every call while the lead is held; release once all are queued (after running
    ``meanwhile``, if given).

    Returns the outcomes and the size of every group committed meanwhile.
    """
    groups: list[int] = []
    commit = storage._commit_group

    def counting(conn: Any, batch: list[_PendingWrite[Any]]) -> None:
        groups.append(len(batch))
        commit(conn, batch)

    storage._commit_group = counting  # type: ignore[method-assign]
    outcomes = Outcomes()
    with storage._writes.held():
        for name, call in calls.items():
            outcomes.start(name, call)
        deadline = time.monotonic() + 10
        while storage._writes.queued < len(calls) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert storage._writes.queued == len(calls), "every call queued its write"
        if meanwhile is not None:
            meanwhile()
    outcomes.join()
    return outcomes, groups


@pytest.fixture
def storage(tmp_path: Path) -> SqliteStorage:
    store = SqliteStorage(tmp_path / "group.db")
    yield store  # type: ignore[misc]
    store.close()


def test_concurrent_writes_share_one_transaction(storage: SqliteStorage, tmp_path: Path) -> None:
    items = [new() for _ in range(6)]
    calls: dict[str, Callable[[], Any]] = {
        f"enqueue{i}": (lambda item=item: storage.enqueue([item], T0)) for i, item in enumerate(items)}
    calls["otp"] = lambda: issue(storage, "+447700900555", "123456")
    calls["state"] = lambda: storage.put_state("k", "v")
    outcomes, groups = queued_behind_lock(storage, calls)

    assert not outcomes.errors
    assert groups == [8], "one leader committed every queued write at once"
    assert outcomes.results["state"] == "v"
    assert outcomes.results["otp"][0].value == "issued"
    reopened = SqliteStorage(tmp_path / "group.db")
    try:
        assert all(reopened.get_message(item.message.id) is not None for item in items), "committed durably"
        assert reopened.get_message(outcomes.results["otp"][2].id) is not None
        assert reopened.get_state("k") == "v"
    finally:
        reopened.close()


def test_a_failing_piece_is_rolled_back_alone_and_its_caller_hears_why(storage: SqliteStorage) -> None:
    first = new(idempotency_key="order-1", fingerprint="a")
    storage.enqueue([first], T0)
    good = new()

    def writes_then_fails() -> None:
        def work(conn: Any) -> None:
            conn.execute("INSERT INTO state (key, value) VALUES ('half', 'written')")
            raise ValueError("the piece changed its mind")

        storage._grouped(work)

    outcomes, groups = queued_behind_lock(storage, {
        "conflict": lambda: storage.enqueue([new(idempotency_key="order-1", fingerprint="b")], T0),
        "fails": writes_then_fails,
        "good": lambda: storage.enqueue([good], T0),
    })

    assert groups == [3]
    assert isinstance(outcomes.errors["conflict"], IdempotencyConflict)
    assert str(outcomes.errors["fails"]) == "the piece changed its mind"
    assert storage.get_state("half") is None, "the failed piece's own write was rolled back"
    assert outcomes.results["good"][0].created and storage.get_message(good.message.id) is not None


def test_an_abandoned_group_fails_every_piece_and_writes_nothing(storage: SqliteStorage) -> None:
    class Interrupted(BaseException):
        pass

    def interrupt(conn: Any) -> None:
        raise Interrupted

    ok = _PendingWrite(lambda conn: conn.execute("INSERT INTO state (key, value) VALUES ('a', '1')").rowcount)
    stop = _PendingWrite(interrupt)
    later = _PendingWrite(lambda conn: conn.execute("INSERT INTO state (key, value) VALUES ('b', '2')").rowcount)
    with pytest.raises(Interrupted):
        storage._commit_group(storage._conn(), [ok, stop, later])

    assert isinstance(ok.error, RuntimeError) and "abandoned" in str(ok.error) and ok.result is None
    assert isinstance(later.error, RuntimeError)
    assert storage.get_state("a") is None and storage.get_state("b") is None
    assert storage.put_state("c", "3") == "3", "the store still works afterwards"


def test_writes_queued_when_the_storage_closes_each_fail_with_the_reason(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "closing.db")
    store.put_state("before", "1")
    outcomes, _groups = queued_behind_lock(store, {
        "first": lambda: store.put_state("a", "1"),
        "second": lambda: store.put_state("b", "2"),
    }, meanwhile=store.close)
    for name in ("first", "second"):
        error = outcomes.errors[name]
        assert isinstance(error, RuntimeError) and "closed" in str(error), name
