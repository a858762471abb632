"""Waking idle workers of every process the moment a message is committed to a SQLite file.

SQLite tells no one about a commit. :class:`~otpagent.storage.sqlite_wakeup.DataVersionWatch`
polls ``PRAGMA data_version`` every 1 to 4 ms instead; the read is a few microseconds, but each
look is a timer wake-up of the worker's thread, 60-150 µs of CPU on a virtual machine: 3.5% of a
core for a worker with nothing to do, and at 200 messages a second the polls were the biggest
part of the worker's CPU, more than sending.

A named pipe (FIFO) beside the database, ``<database>-wake``, lets the kernel do the waiting.
A process waiting for work keeps it open for reading and blocks in ``poll`` on it; a process
that commits a new message writes one byte to it. Idle, a worker then costs nothing; woken, it
is running within microseconds of the commit.

- A byte wakes every process blocked on the pipe (each sees it readable), and is read by one
  of them. A reader drains the pipe before each claim (:meth:`WakePipe.mark`), so a byte is
  never the only news of a message nobody will look for: whoever drains it claims next, and
  sees every message committed before the byte was written.
- Every store opens both ends when it opens, so a writer always finds a reader (its own, if
  no worker is running) and never blocks: the pipe is written non-blocking, and a full pipe
  (the workers have a wake-up waiting already, or there are none) is let be. A worker holds a
  writing end too, so the pipe never reports a hang-up when other writers close. Nothing
  depends on the byte: the dispatcher's idle poll (``dispatcher.poll_interval_seconds``) finds
  every message without it, only later.
- Both ends are opened close-on-exec, and a forked child closes its inherited copies at once
  (``os.register_at_fork``), as the writer lock does.

Where a FIFO cannot be made or opened (Windows, a filesystem without them, one made by another
user without access for this one) :func:`wake_pipe` returns None and the store polls
``data_version`` as before.
"""

from __future__ import annotations

import math
import os
import select
import stat
import sys
import threading
import time
import weakref
from contextlib import suppress
from pathlib import Path

import structlog

__all__ = ["WakePipe", "pipe_path", "wake_pipe"]

log = structlog.get_logger("otpagent.storage")


def pipe_path(database: Path) -> Path:
    """The wake-up pipe of ``database``: beside it, as its ``-wal``, ``-shm`` and ``-lock`` are."""
    return database.with_name(database.name + "-wake")


def wake_pipe(database: Path) -> WakePipe | None:
    """The wake-up pipe of ``database``, made if missing; None where there can be none."""
    if sys.platform == "win32" or not hasattr(os, "mkfifo"):
        return None
    path = pipe_path(database)
    try:
        os.mkfifo(path, 0o600)
        with suppress(OSError):  # who may write the database may wake its workers
            path.chmod(stat.S_IMODE(database.stat().st_mode) & 0o666 or 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        log.info("sqlite_wake_pipe_unavailable", path=str(path), error=str(exc))
        return None
    if not path.is_fifo():
        log.warning("sqlite_wake_pipe_unavailable", path=str(path), error="exists and is not a FIFO")
        return None
    pipe = WakePipe(path)
    if pipe._ends() is None:  # made by another user who may not let us in: poll rather than sleep
        return None
    return pipe


class WakePipe:
    """Both ends of one database's wake-up pipe, for one store (see the module's docstring).

    :meth:`poke` may be called from any thread; :meth:`mark` and :meth:`wait_for_work` from the
    threads that claim.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._reader: int | None = None
        self._writer: int | None = None
        self._unavailable = False
        _OPEN.add(self)

    def mark(self) -> None:
        """Take the wake-ups written so far, just before a claim looks for work: a wait that
        follows returns at once only for a message committed after this."""
        ends = self._ends()
        if ends is not None:
            self._drain(ends[0])

    def wait_for_work(self, timeout: float) -> None:
        """Return when a message has been committed since :meth:`mark`, or after ``timeout``."""
        ends = self._ends()
        if ends is None:
            time.sleep(max(0.0, timeout))
            return
        poller = select.poll()
        poller.register(ends[0], select.POLLIN)
        try:
            woken = poller.poll(max(0, math.ceil(timeout * 1000)))
        except OSError:  # closed under us (the store closed): the caller looks at its own state
            return
        if woken:
            self._drain(ends[0])

    def poke(self) -> None:
        """Tell the waiting workers that a message was committed (never blocks, never raises)."""
        ends = self._ends()
        if ends is None:
            return
        with self._lock:  # never a write to a descriptor close() has let go (its number may be reused)
            if self._writer != ends[1]:
                return
            try:
                os.write(ends[1], b"\0")
            except BlockingIOError:
                pass  # full: every reader has a wake-up waiting already (or there is none)
            except OSError as exc:  # not expected with our own reader open: the idle poll covers it
                log.warning("sqlite_wake_pipe_unwritable", path=str(self.path), error=str(exc))

    def _drain(self, reader: int) -> None:
        """Read every byte waiting in the pipe, if ``reader`` is still our open end (bounded: a
        pipe holds 64 KiB on Linux)."""
        with self._lock:
            if self._reader != reader:
                return
            for _ in range(64):
                try:
                    if len(os.read(reader, 4096)) < 4096:
                        return
                except OSError:  # BlockingIOError when empty; anything else: the idle poll covers it
                    return

    def _ends(self) -> tuple[int, int] | None:
        """(reading end, writing end), opened on first use in this process; None if they cannot be."""
        reader, writer = self._reader, self._writer
        if reader is not None and writer is not None and self._pid == os.getpid():
            return reader, writer
        with self._lock:
            if self._pid != os.getpid():
                self._forget_inherited()
            if self._reader is None and not self._unavailable:
                try:
                    reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError as exc:
                    self._unavailable = True
                    log.warning("sqlite_wake_pipe_unavailable", path=str(self.path), error=str(exc))
                    return None
                try:  # with our reader open, this cannot fail for want of one
                    self._writer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError as exc:
                    os.close(reader)
                    self._unavailable = True
                    log.warning("sqlite_wake_pipe_unavailable", path=str(self.path), error=str(exc))
                    return None
                self._reader = reader
            if self._reader is None or self._writer is None:
                return None
            return self._reader, self._writer

    def close(self) -> None:
        """Close both ends (a thread blocked in :meth:`wait_for_work` returns by its timeout)."""
        with self._lock:
            if self._pid == os.getpid():
                for fd in (self._reader, self._writer):
                    if fd is not None:
                        with suppress(OSError):
                            os.close(fd)
            self._reader = self._writer = None
            self._unavailable = True

    def _forget_inherited(self) -> None:
        """In a forked child: close the parent's descriptors (this copy only), to open our own."""
        for fd in (self._reader, self._writer):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._reader = self._writer = None
        self._pid = os.getpid()


#: The pipes of this process, for the at-fork hook.
_OPEN: weakref.WeakSet[WakePipe] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipe in list(_OPEN):
        pipe._lock = threading.Lock()  # a parent's thread may have held it at the fork
        pipe._forget_inherited()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_after_fork_in_child)
