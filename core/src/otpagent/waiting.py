"""``send --wait``: see one message through to its end from a one-shot process.

A message sent from the command line is only queued: a worker delivers it. When no worker of
the fleet is alive (:func:`otpagent.fleet.live_workers`), :func:`wait_for_delivery` delivers
it itself: it starts this process's dispatcher, which works the queue exactly as
``otpagent run`` does (claims under leases, retries with backoff, fallback) until the message
is finished, then stops, finishing what it holds. When a worker is alive, it waits for that
worker.

Why no timing can lose or double a message: the roster only decides whether this process
*helps*; who sends is decided by the queue's leases, which hand each message to exactly one
dispatcher. Two processes that both find no worker both run a dispatcher, and each message
still goes out once. A worker that stops while we wait leaves the message queued; the roster is
read again every second, and once no worker is left this process starts its own dispatcher. A
worker that died stays in the roster until its presence lapses (``PRESENCE_SECONDS``), which
can delay the message, never lose it. When the wait runs out the message stays queued, and the
next worker to run delivers it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from otpagent.fleet import live_workers
from otpagent.model import Event, Message
from otpagent.protocols import FINISHED_STATUSES

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["WaitResult", "wait_for_delivery"]

_ENDINGS = frozenset(s.value for s in FINISHED_STATUSES)


@attrs.frozen(kw_only=True)
class WaitResult:
    """How the wait ended. ``worked_here``: this process ran a dispatcher (no worker was alive);
    ``sent_here``: this process's dispatcher is the one that finished the message."""

    message: Message | None
    finished: bool
    worked_here: bool
    sent_here: bool
    workers_seen: tuple[str, ...]
    seconds: float

    @property
    def handled_by(self) -> str:
        """``this_process``, ``another_process`` (we helped, but another dispatcher took it) or
        ``worker`` (a running worker did it; we only waited)."""
        if self.sent_here:
            return "this_process"
        return "another_process" if self.worked_here else "worker"


class _EndingTap:
    """An event sink that notes the message ids this process's dispatcher finished."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.seen = threading.Event()

    def emit(self, event: Event) -> None:
        if event.message_id == self.message_id and event.type in _ENDINGS:
            self.seen.set()

    def close(self) -> None:
        """Nothing to release."""


def _other_workers(agent: IntelligentOTPAgent, own: str) -> list[str]:
    """The live workers in the fleet's roster, this process's own dispatcher left out."""
    return [w.worker_id for w in live_workers(agent.capabilities.shared_state, agent.clock()) if w.worker_id != own]


def wait_for_delivery(agent: IntelligentOTPAgent, message_id: str, timeout: float, *, poll: float = 0.05,
                      roster_every: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> WaitResult:
    """Wait at most ``timeout`` seconds for ``message_id`` to reach a finished status, delivering
    it in this process when no worker is alive (see the module docstring)."""
    started = monotonic()
    deadline = started + timeout
    tap = _EndingTap(message_id)
    worked_here = False
    seen: list[str] = []
    next_look = started
    own = agent.dispatcher.worker_id
    try:
        while True:
            message = agent.storage.get_message(message_id)
            finished = message is None or message.status.value in _ENDINGS
            now = monotonic()
            if finished or now >= deadline:
                break
            if not worked_here and now >= next_look:
                others = _other_workers(agent, own)
                seen.extend(w for w in others if w not in seen)
                if not others:
                    agent.bus.add_sink(tap)
                    agent.start_processing()
                    worked_here = True
                next_look = now + roster_every
            time.sleep(max(0.0, min(poll, deadline - now)))
    finally:
        if worked_here:
            agent.stop_processing()  # finishes and records whatever it holds
    if not worked_here and not seen:  # a worker finished it before the first look at the roster
        seen = _other_workers(agent, own)
    # The bus hands events to sinks on its own thread: give it a moment to reach the tap.
    sent_here = worked_here and finished and message is not None and tap.seen.wait(0.5)
    return WaitResult(message=message, finished=finished and message is not None, worked_here=worked_here,
                      sent_here=sent_here, workers_seen=tuple(seen), seconds=monotonic() - started)
