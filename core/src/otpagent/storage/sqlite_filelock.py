"""Handing SQLite's write lock from one process to the next without polling.

SQLite answers a process that wants to write while another one writes "database is locked"
and leaves the waiting to it. Ours polled (``SqliteWriter._execute_waiting``: 0.2 ms doubling
to 4 ms), so a process that found the lock taken slept on after it was free (about half a
pause per contended write) and spent a ``BEGIN`` attempt on every poll: with two
``serve --processes`` on one file, each process spent up to half its time there.

So otpagent's writers, in every process, first take an exclusive ``flock`` on a file beside the
database (``<database>-lock``) and hold it until their transaction ends: the kernel wakes the
next waiter the moment the holder lets go. SQLite's own lock stays the authority (other
programs writing the file, and any write made while this lock was unavailable, still meet the
busy loop); this one only queues otpagent's writers. A process that dies releases it with its
descriptors. Windows has no ``flock``: there writers queue on SQLite's busy loop alone.

A blocking ``flock`` cannot time out, so a contended wait is made by a helper thread while the
caller waits at most the busy timeout: a holder that hangs (a stopped process) costs the
waiter "database is locked" after ``busy_timeout_seconds``, as SQLite's own wait did, never a
hang. When the lock file cannot be opened at all, writers go on without it.

The file is opened close-on-exec, and a child forked from a process closes its copy at once
(``os.register_at_fork``): otherwise a child that outlived a parent which died holding the lock
would keep it, and every writer would wait out its busy timeout.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import structlog

if sys.platform != "win32":
    import fcntl

    def _lock(fd: int, *, wait: bool) -> bool:
        """Take the lock of ``fd``'s open file; without ``wait``, False when another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
else:  # Windows has no flock: its writers queue on SQLite's busy loop alone (no file is opened)
    def _lock(fd: int, *, wait: bool) -> bool:
        raise OSError("no flock on Windows")

    def _unlock(fd: int) -> None:
        raise OSError("no flock on Windows")

__all__ = ["WriterFileLock", "lock_path"]

log = structlog.get_logger("otpagent.storage")


def lock_path(database: Path) -> Path:
    """The lock file of ``database``: beside it, as SQLite's ``-wal`` and ``-shm`` are."""
    return database.with_name(database.name + "-lock")


class _Wait:
    """One contended acquisition, handed to the helper thread."""

    __slots__ = ("abandoned", "fd", "granted", "guard")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.granted = threading.Event()
        self.guard = threading.Lock()
        self.abandoned = False


class WriterFileLock:
    """The exclusive lock otpagent's writers of one SQLite file take around each write
    transaction, across processes (see the module's docstring).

    Not reentrant, and meant to be taken by one thread of the instance at a time (the writer
    holds its in-process write lock around it). ``flock`` locks belong to the open file, so two
    instances on one database exclude each other even in one process.
    """

    def __init__(self, database: Path, timeout: float) -> None:
        self.path = lock_path(database)
        self._timeout = timeout
        self._fd: int | None = None
        self._pid = 0
        self._unavailable = False
        self._waits: queue.SimpleQueue[_Wait | int] = queue.SimpleQueue()
        self._helper: threading.Thread | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block; raises ``sqlite3.OperationalError`` ("database is
        locked") when another writer held it for the whole busy timeout."""
        fd = self.acquire()
        try:
            yield
        finally:
            self.release(fd)

    def acquire(self) -> int | None:
        """Take the lock (as :meth:`held` does) and return what :meth:`release` needs: the
        group commit calls the two directly, a context manager costing more than both flocks."""
        fd = self._fd
        if fd is None or self._pid != os.getpid():
            fd = self._descriptor()
        if fd is None:
            return None
        if _lock(fd, wait=False) or self._wait(fd):
            return fd
        raise sqlite3.OperationalError(
            f"database is locked: another otpagent writer held {str(self.path)!r} for {self._timeout:g} s "
            "(storage.busy_timeout_seconds)")

    @staticmethod
    def release(fd: int | None) -> None:
        """Let go of the lock :meth:`acquire` took (``fd``: what it returned)."""
        if fd is not None:
            _unlock(fd)

    def _descriptor(self) -> int | None:
        """The lock file, opened once per process: a forked child opens its own (sharing the
        parent's open file, ``flock`` would see the two processes as one holder)."""
        if sys.platform == "win32":
            return None
        if self._fd is not None:
            if self._pid == os.getpid():
                return self._fd
            self._forget_inherited()  # a fork the at-fork hook did not see (from C)
        if self._unavailable:
            return None
        self._pid = os.getpid()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            try:  # a file made by another user: a lock needs no write access
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                self._unavailable = True
                log.warning("sqlite_writer_lock_unavailable", path=str(self.path), error=str(exc))
        if self._fd is not None:
            _OPEN.add(self)
        return self._fd

    def _forget_inherited(self) -> None:
        """In a forked child: close the parent's lock file (closing our copy leaves the parent's
        lock alone) and the parent's helper thread, which the child does not have."""
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
        self._fd, self._pid, self._helper, self._waits = None, 0, None, queue.SimpleQueue()

    def _wait(self, fd: int) -> bool:
        """Whether the helper thread got the lock for us within the timeout. A wait given up
        on is marked abandoned: the helper lets the lock go as soon as it gets it."""
        wait = _Wait(fd)
        self._waits.put(wait)
        if self._helper is None:
            self._helper = threading.Thread(target=self._serve, args=(self._waits,),
                                            name="otpagent-sqlite-lock", daemon=True)
            self._helper.start()
        if wait.granted.wait(self._timeout):
            return True
        with wait.guard:
            wait.abandoned = not wait.granted.is_set()
        return not wait.abandoned

    @staticmethod
    def _serve(waits: queue.SimpleQueue[_Wait | int]) -> None:
        """The helper thread: blocks in ``flock`` for each contended wait in turn. Told to stop,
        it closes the file (it may have been blocked on it until then)."""
        while isinstance(wait := waits.get(), _Wait):
            try:
                _lock(wait.fd, wait=True)
            except OSError as exc:  # never expected: the writer goes on under SQLite's lock alone
                log.warning("sqlite_writer_lock_failed", error=str(exc))
            with wait.guard:
                if wait.abandoned:
                    _unlock(wait.fd)
                else:
                    wait.granted.set()
        os.close(wait)

    def close(self) -> None:
        """Close the lock file (the helper thread closes it, if there is one, once it is not
        blocked: the descriptor is never closed under a waiting ``flock``)."""
        fd, self._fd = self._fd, None
        if fd is None or self._pid != os.getpid():
            return
        if self._helper is None:
            os.close(fd)
        else:
            self._waits.put(fd)
            self._helper = None


#: The locks with an open file in this process, for the at-fork hook.
_OPEN: weakref.WeakSet[WriterFileLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_OPEN):
        lock._forget_inherited()
    _OPEN.clear()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_after_fork_in_child)
