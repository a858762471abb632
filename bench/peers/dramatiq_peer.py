"""Dramatiq on the machine's Redis: a ``RedisBroker`` in its own key namespace, a no-op actor.

One worker process runs ``dramatiq.Worker`` with the CLI's per-process default of 8 threads
and the default middleware (age and time limits, retries, callbacks, pipelines, shutdown
notifications); the CLI would also fork one such process per core, which the bench does not
(one worker process, as for every peer). Enqueue is ``actor.send`` (one Lua script call).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from bench.peers.base import Gate, JobLog, Payload, PeerDriver, Place, Producer
from bench.peers.redis_keys import URL, delete_keys, key_prefix, redis_unavailable

__all__ = ["DramatiqPeer"]

THREADS = 8
QUEUE = "noop"


def _actor(place: Place, job: JobLog | None = None) -> tuple[Any, Any]:
    """(broker, the no-op actor) in the place's namespace."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL, namespace=key_prefix(place.tag))
    dramatiq.set_broker(broker)

    def noop(payload: Payload) -> None:
        if job is not None:
            job.ran(payload)

    return broker, dramatiq.actor(noop, actor_name="noop", queue_name=QUEUE, broker=broker)


class _Producer(Producer):
    def __init__(self, place: Place) -> None:
        self._broker, self._actor = _actor(place)

    async def send(self, payload: Payload) -> None:
        self._actor.send(payload)

    async def close(self) -> None:
        self._broker.close()


class DramatiqPeer(PeerDriver):
    name = "Dramatiq"
    backend = "Redis"
    distribution = "dramatiq"
    workers = f"1 process: `dramatiq.Worker` with {THREADS} threads (the CLI's default per process), prefetch 16"
    guarantee = ("Redis broker: a fetched message waits in a per-worker ack set and is deleted when acked "
                 "after it ran; a dead worker's unacked messages are requeued (at-least-once, as far as "
                 "Redis keeps them: here it is not persisted)")

    def unavailable(self) -> str | None:
        return super().unavailable() or redis_unavailable()

    def pending(self, place: Place) -> int:
        import redis

        client = redis.Redis.from_url(URL)
        return int(client.hlen(f"{key_prefix(place.tag)}:{QUEUE}.msgs"))

    def cleanup(self, place: Place) -> None:
        delete_keys(place.tag)

    def producer(self, place: Place) -> Producer:
        return _Producer(place)

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        from dramatiq import Worker

        broker, _ = _actor(place, job)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        worker = Worker(broker, worker_threads=THREADS)
        gate()
        worker.start()
        while not stop.wait(0.5):
            pass
        worker.stop()
        broker.close()

