"""Group commit's leader and followers: many threads' writes committed together, each caller
released as soon as its own group is done.

Callers queue their writes; the first to find no group being written leads: it takes every
write queued so far and commits them (the backend's ``commit`` callable, run on the leader's
thread). Writes queued meanwhile wait for the next group, which the leader hands to the oldest
of them when it finishes, so exactly one group is written at a time and nobody polls.

Each waiting caller sleeps on a lock of its own, released when its group is done (or when it is
handed the lead). In the obvious design, every caller taking one shared "leader" lock in turn
to see whether its write is done, a follower of a finished group can find the next leader
holding that lock and wait out a commit that is not its own. (Throughput measured the same
either way on this project's benchmarks; the point is that no caller waits for a write it is
not part of.) Used by the SQLite writer and the PostgreSQL plugin alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["CommitQueue", "as_exception"]

W = TypeVar("W")


class _Ticket(Generic[W]):
    __slots__ = ("done", "wake", "write")

    def __init__(self, write: W) -> None:
        self.write = write
        self.done = False
        self.wake = threading.Lock()
        self.wake.acquire()  # released when the write's group is done, or to hand it the lead


class CommitQueue(Generic[W]):
    """Runs ``commit(group)`` for groups of writes submitted by concurrent threads.

    ``commit`` records each write's own result or error on the write (it must not raise for
    one write's failure); whatever it raises reaches the leader's caller only, after every
    waiting caller of the group has been released.
    """

    def __init__(self, commit: Callable[[list[W]], None]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._pending: list[_Ticket[W]] = []
        self._active = False
        #: The waiting write last handed the lead, until it takes it (see :meth:`_withdraw`).
        self._successor: _Ticket[W] | None = None

    def run(self, write: W) -> None:
        """Return once ``write`` has been committed with its group (its result is on it).

        A write that finds no group being written (a lone caller, the commonest case) is its own
        group at once: no ticket, so no lock of its own to make, take and release. Whoever queues
        meanwhile waits for the next group, as behind any leader."""
        with self._lock:
            alone = not self._active  # not active: nothing is pending either (see _hand_on)
            self._active = True
        if not alone:
            self.run_many((write,))
            return
        try:
            self._commit([write])
        finally:
            self._hand_on()

    def run_many(self, writes: Sequence[W]) -> None:
        """Return once every write of ``writes`` has been committed. They are queued together, so
        they are committed in one group (with whatever else is queued), in this order."""
        if not writes:
            return
        tickets = [_Ticket(write) for write in writes]
        first = tickets[0]  # every ticket is in the same group: waiting on one is waiting on all
        with self._lock:
            self._pending.extend(tickets)
            lead = not self._active
            self._active = True
        if not lead:
            try:
                first.wake.acquire()
            except BaseException:  # e.g. KeyboardInterrupt in the main thread while it waited
                self._withdraw(tickets)
                raise
            if first.done:
                return
        self._lead()

    def _withdraw(self, tickets: list[_Ticket[W]]) -> None:
        """A caller that stops waiting takes back its writes if no group has them yet, and passes
        the lead on if it had just been handed it: the queue never waits for a caller that left."""
        with self._lock:
            for ticket in tickets:
                if ticket in self._pending:
                    self._pending.remove(ticket)
            handed = self._successor is tickets[0]
            if handed:
                self._successor = None
        if handed:
            self._hand_on()

    @property
    def queued(self) -> int:
        """How many writes wait for the next group."""
        with self._lock:
            return len(self._pending)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lead as a writing leader would: writes submitted meanwhile queue up, and the
        oldest of them leads them all as one group when the block ends (tests make groups so)."""
        with self._lock:
            if self._active:
                raise RuntimeError("a group is being written")
            self._active = True
        try:
            yield
        finally:
            self._hand_on()

    def _lead(self) -> None:
        with self._lock:
            group, self._pending = self._pending, []
            self._successor = None
        try:
            self._commit([t.write for t in group])
        finally:
            for ticket in group:
                ticket.done = True
                ticket.wake.release()
            self._hand_on()

    def _hand_on(self) -> None:
        """Give the lead to the oldest waiting write (it wakes not done, and leads), or drop it."""
        with self._lock:
            successor = self._successor = self._pending[0] if self._pending else None
            if successor is None:
                self._active = False
        if successor is not None:
            successor.wake.release()


def as_exception(error: BaseException) -> Exception:
    """``error`` as the ``Exception`` a caller of ``run_many`` hands back for one write (a
    ``KeyboardInterrupt`` in the committing thread becomes a ``RuntimeError`` saying so)."""
    if isinstance(error, Exception):
        return error
    return RuntimeError(f"the write was abandoned: {type(error).__name__} in the committing thread")
