"""The lock file that queues SQLite writers across processes (``otpagent.storage.sqlite_filelock``).

Each test holds the lock the way another process would (its own open file, or a real other
process) and checks what a writer promises: it does not write while the lock is held, it
writes once the lock is let go, it gives up with "database is locked" after its busy timeout
without keeping the lock, and it writes without the lock file when none can be opened.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from otpagent.storage.sqlite import SqliteStorage
from otpagent.storage.sqlite_filelock import lock_path
from otpagent.testing import T0, new

pytestmark = pytest.mark.timeout(60)

#: Long enough for a writer that ignored the lock to have written: it never makes a test pass
#: by itself, only a writer that waits as it should.
WHILE_HELD = 0.3


def take_lock(database: Path) -> int:
    """The writer lock of ``database`` taken through an open file of our own (waiting for it),
    as another process takes it; closing the file lets it go."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextmanager
def held_elsewhere(database: Path) -> Iterator[int]:
    fd = take_lock(database)
    try:
        yield fd
    finally:
        os.close(fd)


class Call:
    """A call run in a thread: what it returned or raised, and whether it has ended."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.result = call()
            except BaseException as exc:  # recorded for the test to inspect
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self) -> Any:
        assert self.done.wait(20), "the call never ended"
        if self.error is not None:
            raise self.error
        return self.result


def enqueue_one(storage: SqliteStorage, name: str) -> str:
    item = new(id=name)
    storage.enqueue([item], T0)
    return item.message.id


def test_a_write_waits_while_the_lock_is_held_and_goes_ahead_when_it_is_let_go(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    try:
        with held_elsewhere(storage.path):
            grouped = Call(lambda: enqueue_one(storage, "msg_grouped"))
            assert not grouped.done.wait(WHILE_HELD), "a grouped write went ahead under another writer's lock"
            assert storage.get_message("msg_grouped") is None
        assert grouped.wait() == "msg_grouped"
        assert storage.get_message("msg_grouped") is not None

        with held_elsewhere(storage.path):
            def in_transaction() -> None:
                with storage.transaction() as conn:
                    conn.execute("INSERT INTO state (key, value) VALUES ('k', 'v')")

            transaction = Call(in_transaction)
            assert not transaction.done.wait(WHILE_HELD), "a transaction began under another writer's lock"
        transaction.wait()
        assert storage.connection().execute("SELECT value FROM state WHERE key = 'k'").fetchone()[0] == "v"
    finally:
        storage.close()


def test_a_writer_gives_up_after_its_busy_timeout_and_does_not_keep_the_lock(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db", busy_timeout=0.2)
    try:
        with held_elsewhere(storage.path):
            with pytest.raises(sqlite3.OperationalError, match=r"database is locked.*busy_timeout_seconds"):
                enqueue_one(storage, "msg_refused")  # grouped: every write of the group hears why
            with pytest.raises(sqlite3.OperationalError, match=re.escape(str(lock_path(storage.path)))), \
                    storage.transaction():
                pass
        # The writer's helper thread still waits for the two locks it was asked for, and gets
        # them now; given up on, it must let each go at once. Taking and leaving the lock again
        # and again (with a pause in which the helper is free to take it) never blocks for good.
        for _ in range(20):
            taken = Call(lambda: take_lock(storage.path))
            os.close(taken.wait())
            time.sleep(0.01)
        assert storage.get_message("msg_refused") is None
        assert enqueue_one(storage, "msg_after") == "msg_after"
    finally:
        storage.close()


def test_writers_go_on_without_the_lock_when_its_file_cannot_be_opened(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    lock_path(database).symlink_to(tmp_path / "missing" / "lock")  # neither creatable nor readable
    storage = SqliteStorage(database)
    try:
        assert enqueue_one(storage, "msg_unlocked") == "msg_unlocked"
        with storage.transaction() as conn:
            conn.execute("INSERT INTO state (key, value) VALUES ('k', 'v')")
        assert storage.get_message("msg_unlocked") is not None
    finally:
        storage.close()


def test_a_forked_child_takes_the_lock_on_its_own_open_file(tmp_path: Path) -> None:
    """``flock`` belongs to an open file: a child that kept using its parent's would be let in
    while the parent holds the lock."""
    storage = SqliteStorage(tmp_path / "a.db", busy_timeout=0.2)
    try:
        enqueue_one(storage, "msg_parent")  # the parent has opened the lock file
        with storage._file_lock.held():
            pid = os.fork()
            if pid == 0:  # the child: report through the exit status only
                code = 3
                try:
                    with storage._file_lock.held():
                        code = 1  # let in under the parent's lock
                except sqlite3.OperationalError:
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child was let in under its parent's lock"
    finally:
        storage.close()


_ORPHANING = textwrap.dedent("""
    import os, sys, time
    from otpagent.storage.sqlite import SqliteStorage

    storage = SqliteStorage(sys.argv[1])
    with storage._file_lock.held():
        child = os.fork()
        if child == 0:  # lives on without writing anything (and without our output pipe)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        os._exit(0)  # dies holding the lock
""")


def test_a_child_that_outlives_a_parent_dead_with_the_lock_does_not_keep_it(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    parent = subprocess.run([sys.executable, "-c", _ORPHANING, str(database)], capture_output=True, text=True,
                            timeout=60, check=True)
    child = int(parent.stdout.split()[0])
    try:
        fd = os.open(lock_path(database), os.O_RDWR)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the forked child kept its dead parent's writer lock"
                    time.sleep(0.02)
        finally:
            os.close(fd)
    finally:
        with suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


_HOLDER = textwrap.dedent("""
    import sys
    from otpagent.storage.sqlite import SqliteStorage

    storage = SqliteStorage(sys.argv[1])
    with storage.transaction() as conn:
        conn.execute("INSERT INTO state (key, value) VALUES ('holder', 'yes')")
        print("held", flush=True)
        sys.stdin.readline()
    storage.close()
""")


def test_a_write_waits_for_another_process_transaction_and_then_commits(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    storage = SqliteStorage(database)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(database)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        write = Call(lambda: enqueue_one(storage, "msg_after_holder"))
        assert not write.done.wait(WHILE_HELD), "a write went ahead inside another process's transaction"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert write.wait() == "msg_after_holder"
        assert holder.wait(20) == 0
        value = storage.connection().execute("SELECT value FROM state WHERE key = 'holder'").fetchone()[0]
        assert value == "yes"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        storage.close()
