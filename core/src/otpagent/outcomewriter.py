"""Recording outcomes from one writer thread, in batches, while the workers go on sending.

With a backend that records many outcomes in one call (:class:`~otpagent.protocols.BatchUpdates`),
a worker thread that has sent a message hands its outcome here and takes its next message at
once. One thread writes whatever has gathered meanwhile with one ``update_messages`` call (one
transaction, on PostgreSQL one statement), then runs each outcome's follow-up (its events to the
sinks, the counters) for those that applied. Without it, each of the dispatcher's threads
waited for its own commit and was woken for it: with 64 threads and a fast channel, those
hand-offs cost more of the worker's CPU than the writes themselves.

What this keeps:

- At-least-once. A message stays leased (``sending``, its lease renewed by the heartbeat while
  its outcome waits here) until the outcome is written; a process that dies before that sends
  it again after the lease, exactly as when it dies in the middle of a send.
- Bounded work in hand. At most ``limit`` outcomes wait; a worker that finds the writer that far
  behind waits for room, so a slow database slows the sending instead of growing memory and
  the number of leases this process holds.
- Nothing lost silently. An outcome the store could not write (its own exception, or the whole
  call raising) goes to ``on_lost``: the dispatcher puts the message back in the queue one
  lease later, as for any outcome it could not record.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from otpagent.logs import get_logger
from otpagent.protocols import BatchUpdates, MessageWrite

__all__ = ["OutcomeWriter"]

log = get_logger("otpagent.outcomewriter")

#: The most outcomes written by one ``update_messages`` call.
MAX_BATCH = 256
#: How long a worker waiting for room looks again at most (the writer wakes it after each batch).
_ROOM_POLL_SECONDS = 0.5


class _Item:
    __slots__ = ("done", "write")

    def __init__(self, write: MessageWrite, done: Callable[[bool], None]) -> None:
        self.write = write
        self.done = done


class OutcomeWriter:
    """One thread writing the outcomes handed to :meth:`submit`, in batches of what has gathered."""

    def __init__(self, store: BatchUpdates, *, limit: int, on_lost: Callable[[str, Exception], None],
                 name: str = "otpagent-outcomes") -> None:
        if limit < 1:
            raise ValueError("the outcome writer needs room for at least one outcome")
        self.store = store
        self.limit = limit
        self.on_lost = on_lost
        self.name = name
        self._items: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()  # None: write what is left, end
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified after each batch written
        self._pending = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Outcomes handed over and not yet written and followed up."""
        return self._pending

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, write: MessageWrite, done: Callable[[bool], None]) -> None:
        """Queue ``write``; ``done(applied)`` runs on the writer thread once it is committed.

        Once the writer is stopped, the write is made here and now instead, so an outcome that
        comes late (an abandoned call's timeout) is never dropped.
        """
        with self._lock:
            queued = not self._closed
            if queued:
                self._pending += 1
                self._items.put(_Item(write, done))
        if not queued:
            self._write([_Item(write, done)])
            return
        if self._pending > self.limit:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        # Bounded by the writer: it wakes us after every batch, and a writer that has ended
        # leaves nothing to wait for.
        with self._room:
            while self._pending > self.limit and self.running:
                self._room.wait(_ROOM_POLL_SECONDS)

    def stop(self, timeout: float | None = None) -> bool:
        """Write everything handed over so far, then end the thread; True when it ended in time."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            self._items.put(None)
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _loop(self) -> None:
        ending = False
        while not ending:
            batch: list[_Item] = []
            item = self._items.get()
            while item is not None:  # at most MAX_BATCH: what has gathered, up to that many
                batch.append(item)
                if len(batch) == MAX_BATCH:
                    break
                try:
                    item = self._items.get_nowait()
                except queue.Empty:
                    break
            else:
                ending = True  # stop() asked: what came before is in this batch
            if batch:
                self._write(batch)
                with self._room:
                    self._pending -= len(batch)
                    self._room.notify_all()

    def _write(self, batch: list[_Item]) -> None:
        results: list[bool | Exception]
        try:
            results = self.store.update_messages([item.write for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"update_messages returned {len(results)} results for {len(batch)} writes")
        except Exception as exc:  # nothing can be said of any of them: each is unrecorded
            log.exception("outcomes_not_written", count=len(batch))
            results = [exc] * len(batch)
        for item, result in zip(batch, results, strict=True):
            try:
                if isinstance(result, Exception):
                    self.on_lost(item.write.update.message_id, result)
                else:
                    item.done(result)
            except Exception:  # one follow-up's failure must not cost the others theirs
                log.exception("outcome_follow_up_failed", message_id=item.write.update.message_id)
