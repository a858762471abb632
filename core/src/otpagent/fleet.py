"""Which workers are alive across the fleet, and the queue's depth minute by minute.

Both live in the storage backend's shared state, so every process sees the same answer: the
command line (is anyone working the queue, or should ``send --wait`` deliver itself?), the
dashboard, ``get_metrics()`` and ``/metrics``.

- **The roster** (``fleet:workers``): each running dispatcher writes its presence when it
  starts, renews it every few seconds from its housekeeping thread, and removes it when it
  stops. A presence not renewed for :data:`PRESENCE_SECONDS` belongs to a worker that died
  (SIGKILL, a lost machine) and is ignored, and pruned by the next write. A presence says that
  a worker *was* alive a moment ago, nothing more: work is never handed out on its strength
  (the queue's leases do that), so a stale entry can delay, never lose or double, a message.
- **Queue depth samples** (``fleet:queue_depth``): one sample a minute, taken by whichever live
  worker first finds the minute unsampled; the dashboard draws the last hour from them. No
  worker, no samples: the chart then shows a gap, not a made-up line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from otpagent.logs import get_logger
from otpagent.protocols import SharedState

__all__ = [
    "PRESENCE_SECONDS",
    "QUEUE_DEPTH_KEY",
    "RENEW_SECONDS",
    "ROSTER_KEY",
    "SAMPLE_SECONDS",
    "FleetRoster",
    "WorkerPresence",
    "live_workers",
    "queue_depth_samples",
]

log = get_logger("otpagent.fleet")

ROSTER_KEY = "fleet:workers"
QUEUE_DEPTH_KEY = "fleet:queue_depth"
#: A worker renews its presence this often (its housekeeping thread's tick)...
RENEW_SECONDS = 5.0
#: ...and one not renewed for this long is taken for dead.
PRESENCE_SECONDS = 20.0
#: Queue depth is sampled once per this many seconds, aligned to the clock (a minute).
SAMPLE_SECONDS = 60.0
#: Samples older than this are dropped (three hours: the dashboard shows one).
KEEP_SAMPLES_SECONDS = 3 * 3600.0


@attrs.frozen(kw_only=True)
class WorkerPresence:
    """One running dispatcher: its id (``host:pid:random``), its worker threads, when it
    started and when it last said it was alive."""

    worker_id: str
    threads: int
    started_at: float
    seen_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "threads": self.threads, "started_at": self.started_at,
                "seen_at": self.seen_at}


def _roster(value: str | None) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(value) if value else {}
    except ValueError:  # written by something else: start over rather than fail the worker
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def live_workers(state: SharedState, now: float) -> list[WorkerPresence]:
    """Every worker whose presence was renewed within :data:`PRESENCE_SECONDS`, oldest first."""
    alive = []
    for worker_id, entry in _roster(state.get_state(ROSTER_KEY)).items():
        try:
            presence = WorkerPresence(worker_id=worker_id, threads=int(entry["threads"]),
                                      started_at=float(entry["started_at"]), seen_at=float(entry["seen_at"]))
        except (KeyError, TypeError, ValueError):
            continue
        if now - presence.seen_at <= PRESENCE_SECONDS:
            alive.append(presence)
    return sorted(alive, key=lambda p: (p.started_at, p.worker_id))


class FleetRoster:
    """One dispatcher's entry in the roster, and its share of the queue depth samples."""

    def __init__(self, state: SharedState, worker_id: str, threads: int) -> None:
        self.state = state
        self.worker_id = worker_id
        self.threads = threads
        self._started_at: float | None = None

    def join(self, now: float) -> None:
        """Say this worker is alive (at start; :meth:`renew` keeps saying it)."""
        self._started_at = now
        self.renew(now)

    def renew(self, now: float) -> None:
        started = self._started_at if self._started_at is not None else now

        def update(current: str | None) -> str:
            roster = {k: v for k, v in _roster(current).items()
                      if now - float(v.get("seen_at", 0.0)) <= PRESENCE_SECONDS and k != self.worker_id}
            roster[self.worker_id] = {"threads": self.threads, "started_at": started, "seen_at": now}
            return json.dumps(roster, sort_keys=True)

        self.state.update_state(ROSTER_KEY, update)

    def leave(self, now: float) -> None:
        """Remove this worker's entry (it stopped; its in-flight sends are recorded)."""

        def update(current: str | None) -> str:
            return json.dumps({k: v for k, v in _roster(current).items()
                               if k != self.worker_id and now - float(v.get("seen_at", 0.0)) <= PRESENCE_SECONDS},
                              sort_keys=True)

        self.state.update_state(ROSTER_KEY, update)
        self._started_at = None

    def tick(self, now: float, queue_size: Callable[[], int]) -> None:
        """The housekeeping thread's call: renew the presence, and take this minute's queue
        depth sample unless another worker already did."""
        self.renew(now)
        minute = now - now % SAMPLE_SECONDS
        if any(at == minute for at, _ in queue_depth_samples(self.state, minute)):
            return
        depth = queue_size()

        def update(current: str | None) -> str:
            samples = [s for s in _samples(current) if s[0] > now - KEEP_SAMPLES_SECONDS]
            if not any(at == minute for at, _ in samples):
                samples.append((minute, depth))
            return json.dumps(sorted(samples))

        self.state.update_state(QUEUE_DEPTH_KEY, update)


def _samples(value: str | None) -> list[tuple[float, int]]:
    try:
        data = json.loads(value) if value else []
        return [(float(at), int(depth)) for at, depth in data]
    except (ValueError, TypeError):
        return []


def queue_depth_samples(state: SharedState, since: float) -> list[tuple[float, int]]:
    """``(minute, depth)`` samples taken at or after ``since``, oldest first."""
    return [s for s in _samples(state.get_state(QUEUE_DEPTH_KEY)) if s[0] >= since]
