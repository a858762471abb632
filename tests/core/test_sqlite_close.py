"""Closing SQLite storage while other threads hold connections: a statement in flight on
another thread finishes (closing its connection under it failed the read, or crashed the
process: the memory benchmark's worker died of a SIGSEGV when the agent closed during a
routing-stats read over a million messages), and no connection is left open for nothing."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from otpagent.storage.sqlite import SqliteStorage

_ROWS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i FROM n"


def _open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            continue
    return count


def test_a_read_in_flight_on_another_thread_finishes_when_the_storage_closes(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    between_rows, closed = threading.Event(), threading.Event()
    read: list[int] = []
    after: list[BaseException] = []

    def reader() -> None:
        cursor = storage.connection().execute(_ROWS)
        read.append(cursor.fetchone()[0])
        between_rows.set()  # the statement is open, between two steps
        closed.wait(10)
        read.extend(row[0] for row in cursor.fetchall())
        try:
            storage.connection()
        except RuntimeError as exc:  # what comes after the close is refused, by name
            after.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert between_rows.wait(10)
    storage.close()
    closed.set()
    thread.join(10)

    assert read == list(range(1, 51))
    assert [str(e) for e in after] == ["storage is closed"]


def test_close_closes_its_own_connection_and_those_of_ended_threads_and_lets_go_of_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    storage = SqliteStorage(path)
    mine = storage.connection()
    opened, done = threading.Event(), threading.Event()

    def idle_thread() -> None:  # opens its connection, then lives on doing nothing with it
        storage.connection().execute("SELECT 1").fetchone()
        opened.set()
        done.wait(10)

    gone = threading.Thread(target=lambda: storage.connection().execute("SELECT 1").fetchone())
    gone.start()
    gone.join(10)
    idle = threading.Thread(target=idle_thread)
    idle.start()
    assert opened.wait(10)
    assert _open_descriptors(path) == 3  # this thread's, the ended thread's and the idle one's

    storage.close()
    try:
        with pytest.raises(sqlite3.ProgrammingError):
            mine.execute("SELECT 1")
        gc.collect()  # the idle thread's connection: closed when the collector frees it
        assert _open_descriptors(path) == 0
    finally:
        done.set()
        idle.join(10)
