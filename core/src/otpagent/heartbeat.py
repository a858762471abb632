"""The lease heartbeat: short leases that a live worker keeps renewing.

A claimed message is leased for ``dispatcher.lease_seconds`` (6 s by default). While this
process is sending it, a heartbeat thread extends the leases of everything the worker holds,
every ``heartbeat_interval`` (a quarter of the lease), in one statement
(``StorageBackend.renew_leases``). So:

- a worker killed with SIGKILL stops renewing, and its messages are claimed by another worker
  at most ``lease_seconds`` after its last heartbeat: within seconds, not after the longest
  provider call;
- a live worker never loses a lease during a slow provider call: the call is bounded by the
  channel guard rail (timeout + grace) and the lease is renewed meanwhile.

A renewal that comes later than a whole lease after the previous one (the process was frozen:
SIGSTOP, a long GC or swap pause) may have let another worker take over; that is logged, naming
the key to raise.

Renewing *everything* the worker holds has one trap: a message whose task ended without
recording an outcome (the storage write failed) would stay ``sending`` and renewed for ever.
:class:`LeaseKeeper` keeps such orphans and gives their leases up before each renewal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from otpagent.logs import get_logger
from otpagent.model import Status
from otpagent.protocols import MessageUpdate, StorageBackend

__all__ = ["LeaseHeartbeat", "LeaseKeeper", "ReclaimGate"]

log = get_logger("otpagent.heartbeat")


class ReclaimGate:
    """Whether this worker may take over other workers' expired leases now.

    An expired lease means its worker died, unless nobody could renew: while the store is out of
    reach (a database outage, a network partition), every live worker's leases run out together.
    Taking them over the moment the store is back would send everything in flight twice. So
    after a gap in this worker's contact with the store longer than ``gap``, it claims only new
    work for one ``lease_seconds``: time enough for the live workers to renew first. A worker
    that died stays dead, and its messages are taken over one lease later than usual.

    Times are ``time.monotonic()`` readings: this is about the connection, not the agent's clock.
    """

    def __init__(self, lease_seconds: float, gap: float) -> None:
        self.lease_seconds = lease_seconds
        self.gap = gap
        self._last_contact: float | None = None
        self._closed_until = float("-inf")
        self._lock = threading.Lock()

    def contact(self, started: float, finished: float) -> None:
        """A call to the store that began at ``started`` succeeded at ``finished``."""
        with self._lock:
            silent_since = self._last_contact if self._last_contact is not None else started
            if finished - silent_since > self.gap:
                self._closed_until = max(self._closed_until, finished + self.lease_seconds)
                log.warning("store_was_unreachable", silent_seconds=round(finished - silent_since, 3),
                            reclaim_after=round(self.lease_seconds, 3))
            self._last_contact = finished

    def may_reclaim(self, now: float) -> bool:
        with self._lock:
            return now >= self._closed_until


class LeaseKeeper:
    """Renews one worker's leases, after giving up those of orphaned messages."""

    def __init__(self, storage: StorageBackend, worker_id: str, lease_seconds: float) -> None:
        self.storage = storage
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._orphans: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def has_orphans(self) -> bool:
        return bool(self._orphans)

    def orphan(self, message_id: str, exc: BaseException) -> None:
        """The task of ``message_id`` ended without recording an outcome."""
        with self._lock:
            self._orphans[message_id] = f"{type(exc).__name__}: {str(exc)[:200]}"

    def renew(self, now: float) -> int:
        """Release the orphans, then renew every other lease this worker holds."""
        self.release_orphans(now)
        return self.storage.renew_leases(self.worker_id, self.lease_seconds, now)

    def release_orphans(self, now: float) -> None:
        """Put orphaned messages back in the queue one lease from now, as if this worker had
        died (the send may have gone out, so it may repeat, as after a crash)."""
        with self._lock:
            orphans = list(self._orphans.items())
        for message_id, why in orphans:
            update = MessageUpdate(
                message_id=message_id, status=Status.RETRYING, expected_owner=self.worker_id,
                expected_statuses=frozenset({Status.SENDING}), due_at=now + self.lease_seconds,
                last_error=f"the worker could not record an outcome ({why}); trying again",
            )
            self.storage.update_message(update, now)  # raises while storage is away: next beat
            with self._lock:
                self._orphans.pop(message_id, None)


class LeaseHeartbeat:
    """Calls ``renew(now)`` every ``interval`` seconds while ``holding()`` says there is
    anything leased to renew."""

    def __init__(self, renew: Callable[[float], int], *, lease_seconds: float, interval: float,
                 holding: Callable[[], bool], clock: Callable[[], float] = time.time,
                 worker_id: str = "") -> None:
        self.renew = renew
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.holding = holding
        self.clock = clock
        self.worker_id = worker_id
        #: Clock time of the last renewal that succeeded (None before the first).
        self.last_renewal: float | None = None
        self._covered_until: float | None = None  # leases held since then are safe until here
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="otpagent-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def beat(self) -> int:
        """Renew now (when anything is held); returns how many leases were extended."""
        now = self.clock()
        if not self.holding():
            # Nothing to keep: any lease taken from now on starts a full lease ahead.
            self._covered_until = now + self.lease_seconds
            return 0
        if self._covered_until is not None and now > self._covered_until:
            log.error("heartbeat_late", worker_id=self.worker_id, late_by=round(now - self._covered_until, 3),
                      why="this process was paused longer than a lease (frozen, swapping, a long GC pause, "
                          "or the database was slow): another worker may have taken over and re-sent "
                          "messages this one was sending; raise dispatcher.lease_seconds if this recurs")
        renewed = self.renew(now)
        self.last_renewal = now
        self._covered_until = now + self.lease_seconds
        return renewed

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the database may be away: try again next beat
                log.warning("lease_renewal_failed", worker_id=self.worker_id, error=type(exc).__name__,
                            detail=str(exc)[:200])
