"""SQLite's wake-up of an idle worker: the pipe beside the database (``-wake``) and, where there
can be no pipe, the ``data_version`` watch. Both must wake a wait for work committed after the
claim before it began, and only for that.

A wait that should return at once is given a timeout of a minute and must be back within half
of it: it returns in microseconds, so the margin is for the machine, never for the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent.storage import sqlite as sqlite_module
from otpagent.storage import sqlite_wakepipe
from otpagent.storage.sqlite import SqliteStorage
from otpagent.storage.sqlite_wakepipe import pipe_path
from otpagent.storage.sqlite_wakeup import DataVersionWatch
from otpagent.testing.data import T0, new

_LONG = 60.0


@pytest.fixture(params=["pipe", "data_version"])
def pair(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SqliteStorage, SqliteStorage]]:
    """A worker's store and a producer's, on one file (as two processes would be), woken
    through the pipe or, as where a FIFO cannot be made, through ``data_version``."""
    if request.param == "data_version":
        monkeypatch.setattr(sqlite_module, "wake_pipe", lambda _path: None)
    worker, producer = SqliteStorage(tmp_path / "w.db"), SqliteStorage(tmp_path / "w.db")
    assert (worker._pipe is None) is (request.param == "data_version")
    yield worker, producer
    worker.close()
    producer.close()


def _returns_at_once(worker: SqliteStorage) -> None:
    started = time.monotonic()
    worker.wait_for_work(_LONG)
    assert time.monotonic() - started < _LONG / 2, "the wait did not see the work committed for it"


def _waits(worker: SqliteStorage, timeout: float = 0.05) -> None:
    started = time.monotonic()
    worker.wait_for_work(timeout)
    assert time.monotonic() - started >= timeout * 0.8, "the wait returned without new work"


def test_work_added_after_an_empty_claim_looked_wakes_the_wait_at_once(
        pair: tuple[SqliteStorage, SqliteStorage]) -> None:
    worker, producer = pair
    assert worker.claim_due("w1", 4, 30.0, T0) == []  # nothing due: the claimer goes to wait...
    producer.enqueue([new(), new()], T0)  # ...and this lands before the wait begins

    _returns_at_once(worker)

    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 2


def test_a_lone_enqueue_in_intake_counts_as_added_too(pair: tuple[SqliteStorage, SqliteStorage]) -> None:
    worker, producer = pair
    worker.claim_due("w1", 4, 30.0, T0)
    producer.enqueue([new()], T0)  # one message, no key: an intake row

    _returns_at_once(worker)


def test_after_a_claim_that_took_everything_due_new_work_wakes_the_wait(
        pair: tuple[SqliteStorage, SqliteStorage]) -> None:
    """The dispatcher waits after a claim that brought fewer than it asked for, not only after
    an empty one: what is committed after that claim looked must end the wait."""
    worker, producer = pair
    producer.enqueue([new()], T0)
    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 1  # fewer than 4: nothing else was due
    producer.enqueue([new()], T0)

    _returns_at_once(worker)

    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 1


def test_work_the_claim_already_took_does_not_end_the_next_wait(pair: tuple[SqliteStorage, SqliteStorage]) -> None:
    worker, producer = pair
    producer.enqueue([new(), new()], T0)
    assert len(worker.claim_due("w1", 4, 30.0, T0)) == 2

    _waits(worker)  # nothing added since the claim looked
    _waits(worker)  # and no claim in between: still nothing


def test_lone_enqueues_the_claim_took_do_not_end_the_next_wait_either(tmp_path: Path) -> None:
    """Through the pipe (the ``data_version`` watch may return once after a claim that moved
    intake rows: its spurious returns are allowed, and cost one empty claim)."""
    worker, producer = SqliteStorage(tmp_path / "w.db"), SqliteStorage(tmp_path / "w.db")
    try:
        worker.claim_due("w1", 4, 30.0, T0)
        producer.enqueue([new()], T0)
        producer.enqueue([new()], T0)
        assert len(worker.claim_due("w1", 4, 30.0, T0)) == 2

        _waits(worker)
    finally:
        worker.close()
        producer.close()


def test_a_producer_in_another_process_wakes_the_waiting_worker(tmp_path: Path) -> None:
    database = tmp_path / "w.db"
    worker = SqliteStorage(database)
    try:
        assert worker._pipe is not None
        assert worker.claim_due("w1", 4, 30.0, T0) == []
        code = textwrap.dedent("""
            import sys
            from otpagent.storage.sqlite import SqliteStorage
            from otpagent.testing.data import T0, new
            store = SqliteStorage(sys.argv[1])
            store.enqueue([new()], T0)
            store.close()
        """)
        producer = subprocess.Popen([sys.executable, "-c", code, str(database)])
        try:
            _returns_at_once(worker)
        finally:
            assert producer.wait(timeout=60) == 0
        assert len(worker.claim_due("w1", 4, 30.0, T0)) == 1
    finally:
        worker.close()


def test_a_commit_with_no_worker_waiting_neither_blocks_nor_fails_and_a_worker_started_later_is_woken(
        tmp_path: Path) -> None:
    producer = SqliteStorage(tmp_path / "w.db")
    worker: SqliteStorage | None = None
    try:
        for _ in range(3):
            producer.enqueue([new()], T0)  # nobody waits: the byte goes to the producer's own reader
        worker = SqliteStorage(tmp_path / "w.db")
        assert len(worker.claim_due("w1", 4, 30.0, T0)) == 3  # a worker starts and drains

        producer.enqueue([new()], T0)

        _returns_at_once(worker)
    finally:
        producer.close()
        if worker is not None:
            worker.close()


def test_a_full_pipe_never_blocks_a_commit_and_one_drain_empties_it(tmp_path: Path) -> None:
    producer, worker = SqliteStorage(tmp_path / "w.db"), SqliteStorage(tmp_path / "w.db")
    try:
        worker.claim_due("w1", 4, 30.0, T0)  # the reader is open, and nobody drains it now
        assert producer._pipe is not None
        for _ in range(70_000):  # more bytes than a pipe holds (64 KiB on Linux)
            producer._pipe.poke()

        _returns_at_once(worker)
        _waits(worker)  # the one wake-up drained them all
    finally:
        producer.close()
        worker.close()


def test_a_worker_gone_costs_the_committers_nothing(tmp_path: Path) -> None:
    producer, worker = SqliteStorage(tmp_path / "w.db"), SqliteStorage(tmp_path / "w.db")
    try:
        worker.claim_due("w1", 4, 30.0, T0)
        producer.enqueue([new()], T0)
        worker.close()  # the worker goes

        producer.enqueue([new()], T0)
        producer.enqueue([new(), new()], T0)

        assert len(producer.claim_due("w2", 10, 30.0, T0)) == 4, "every commit stood"
    finally:
        producer.close()


def test_a_forked_child_does_not_keep_its_parents_end_of_the_pipe(tmp_path: Path) -> None:
    """A child reading its parent's descriptor would swallow the parent's wake-ups."""
    worker = SqliteStorage(tmp_path / "w.db")
    try:
        worker.claim_due("w1", 4, 30.0, T0)  # the reader is open
        assert worker._pipe is not None and worker._pipe._reader is not None
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            os._exit(0 if worker._pipe._reader is None and worker._pipe._writer is None else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child kept the parent's pipe open"
        assert worker._pipe._reader is not None, "the parent keeps its own"
    finally:
        worker.close()


def _watches_data_version_and_still_wakes(database: Path) -> None:
    """A worker's and a producer's store on ``database`` fell back to the ``data_version``
    watch, and a message committed after the worker's claim still ends its wait."""
    worker, producer = SqliteStorage(database), SqliteStorage(database)
    try:
        assert worker._pipe is None and isinstance(worker._watch, DataVersionWatch)
        worker.claim_due("w1", 4, 30.0, T0)
        producer.enqueue([new()], T0)
        _returns_at_once(worker)
    finally:
        worker.close()
        producer.close()


def test_without_a_fifo_the_store_watches_data_version(tmp_path: Path) -> None:
    """A path that is taken by something else (here a plain file) is never written into."""
    pipe_path(tmp_path / "w.db").write_text("not a pipe")

    _watches_data_version_and_still_wakes(tmp_path / "w.db")

    assert pipe_path(tmp_path / "w.db").read_text() == "not a pipe"


def test_a_closed_pipe_writes_and_reads_nothing(tmp_path: Path) -> None:
    """After close() the descriptors' numbers may belong to another file: nothing touches them."""
    store = SqliteStorage(tmp_path / "w.db")
    pipe = store._pipe
    assert pipe is not None
    store.claim_due("w1", 4, 30.0, T0)  # both ends open
    reader, writer = pipe._reader, pipe._writer
    store.close()
    reused = os.open(os.devnull, os.O_RDWR)  # likely takes one of the freed numbers
    try:
        pipe.poke()
        pipe.mark()
        pipe.wait_for_work(0.01)
        assert (pipe._reader, pipe._writer) == (None, None) and {reader, writer} != {None}
    finally:
        os.close(reused)


def test_a_pipe_this_user_may_not_open_falls_back_to_data_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO made by another user (its mode from theirs): rather than sleep out every wait,
    the store watches ``data_version`` as where there can be no pipe."""
    real_open = os.open

    def refusing(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith("-wake"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(sqlite_wakepipe.os, "open", refusing)

    _watches_data_version_and_still_wakes(tmp_path / "w.db")
