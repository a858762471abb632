"""SQLite's wake-up of an idle worker: work committed between its empty claim and its wait."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otpagent.storage import sqlite_wakeup
from otpagent.storage.sqlite import SqliteStorage
from otpagent.testing.data import T0, new


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SqliteStorage, SqliteStorage]]:
    """A worker's store and a producer's, on one file (as two processes would be)."""
    worker, producer = SqliteStorage(tmp_path / "w.db"), SqliteStorage(tmp_path / "w.db")
    yield worker, producer
    worker.close()
    producer.close()


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"the wait slept ({seconds} s): it did not see the work already there")


def test_work_added_after_an_empty_claim_looked_wakes_the_wait_at_once(
        pair: tuple[SqliteStorage, SqliteStorage], monkeypatch: pytest.MonkeyPatch) -> None:
    worker, producer = pair
    assert worker.claim_due("w1", 4, 30.0, T0) == []  # nothing due: the claimer goes to wait...
    producer.enqueue([new()], T0)  # ...and this lands before the wait's first look
    monkeypatch.setattr(sqlite_wakeup.time, "sleep", _no_sleep)

    worker.wait_for_work(30.0)  # returns at its first look

    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 1


def test_a_lone_enqueue_in_intake_counts_as_added_too(
        pair: tuple[SqliteStorage, SqliteStorage], monkeypatch: pytest.MonkeyPatch) -> None:
    worker, producer = pair
    worker.claim_due("w1", 4, 30.0, T0)
    producer.enqueue([new()], T0)  # one message, no key: an intake row
    monkeypatch.setattr(sqlite_wakeup.time, "sleep", _no_sleep)

    worker.wait_for_work(30.0)


def test_without_new_work_the_wait_waits_and_a_mark_is_used_once(
        pair: tuple[SqliteStorage, SqliteStorage], monkeypatch: pytest.MonkeyPatch) -> None:
    worker, producer = pair
    producer.enqueue([new(), new()], T0)
    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 2
    slept: list[float] = []
    monkeypatch.setattr(sqlite_wakeup.time, "sleep", slept.append)  # a wait of 10 ms spins, bounded

    worker.wait_for_work(0.01)  # nothing added since the claim looked

    assert slept, "nothing new: the wait polls until its timeout"
    slept.clear()
    worker.wait_for_work(0.01)  # no claim in between: the old mark is not used again
    assert slept
