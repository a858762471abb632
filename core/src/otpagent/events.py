"""The event bus: hands events to sinks on a background thread so dispatch never waits on them.

Every state change is also written to the ``events`` table in the same transaction as the
change itself; this bus is the fast, best-effort path to log lines and live views. When sinks
fall behind, the bus drops (and counts) rather than grow without bound or block a worker.

Sinks may take only some event types (``EventSink.event_types``); an event no sink takes is
dropped at ``publish``, before the queue, and callers ask :meth:`EventBus.wants` before building
events in bulk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from otpagent.logs import get_logger
from otpagent.model import Event
from otpagent.protocols import EventSink, sink_event_types, sink_start

__all__ = ["EventBus"]

log = get_logger("otpagent.events")
_STOP = object()


class EventBus:
    def __init__(self, sinks: Sequence[EventSink], capacity: int = 100_000) -> None:
        self.sinks = list(sinks)
        # Each sink's optional ``start`` and ``event_types`` are read once, here (see EventSink).
        self._starters = [start for sink in self.sinks if (start := sink_start(sink)) is not None]
        #: Each sink with the types it takes, rebuilt whole when `sinks` changes.
        self._routes = tuple((sink, sink_event_types(sink)) for sink in self.sinks)
        self._wanted = _union([types for _, types in self._routes])
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add_sink(self, sink: EventSink) -> None:
        """Add a sink after the bus was built (the service's latency tap); once only."""
        with self._lock:
            if sink in self.sinks:
                return
            sink_event_types(sink)  # refused before it is added (TypeError naming the sink)
            self.sinks.append(sink)
            self._rebuild()
            start = sink_start(sink)
            if start is not None:
                self._starters.append(start)

    def start(self) -> None:
        """Start delivering; sinks with a ``start()`` of their own (durable ones that resume
        pending work after a restart) are started too, on every call (``start`` is idempotent).
        """
        with self._lock:
            if self._thread is None and self.sinks:
                self._thread = threading.Thread(target=self._run, name="otpagent-events", daemon=True)
                self._thread.start()
            starters = list(self._starters)
        for start in starters:
            start()

    def wants(self, event_type: str) -> bool:
        """Whether any sink takes events of ``event_type``: callers skip building the others."""
        if not self.sinks:
            return False
        wanted = self._current()[1]
        return wanted is None or event_type in wanted

    def _current(self) -> tuple[tuple[tuple[EventSink, frozenset[str] | None], ...], frozenset[str] | None]:
        """The routes and the wanted types, rebuilt if ``sinks`` was changed in place."""
        if len(self._routes) != len(self.sinks):
            with self._lock:
                self._rebuild()
        return self._routes, self._wanted

    def _rebuild(self) -> None:
        """(Under the lock.) Each sink with the types it takes, and their union."""
        routes = tuple((sink, sink_event_types(sink)) for sink in self.sinks)
        self._wanted = _union([types for _, types in routes])  # first: a new type waits for its sink
        self._routes = routes

    def publish(self, events: Sequence[Event]) -> None:
        if not self.sinks:
            return
        wanted = self._current()[1]
        for event in events:
            if wanted is not None and event.type not in wanted:
                continue
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Event)
            self._deliver(item)

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Event):
                self._deliver(item)

    def _deliver(self, event: Event) -> None:
        for sink, types in self._current()[0]:
            if types is not None and event.type not in types:
                continue
            try:
                sink.emit(event)
            except Exception:  # a sink must never break dispatch
                log.exception("event_sink_failed", sink=type(sink).__name__, event_type=event.type)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then close the sinks."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        else:  # never started (a one-shot command): deliver what was published, here
            self._drain()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("event_sink_close_failed", sink=type(sink).__name__)


def _union(types: Sequence[frozenset[str] | None]) -> frozenset[str] | None:
    """Every type some sink takes; None when a sink takes every type."""
    if any(t is None for t in types):
        return None
    return frozenset().union(*(t for t in types if t is not None))
