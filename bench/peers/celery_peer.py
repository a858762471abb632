"""Celery on the machine's Redis: a queue named after the place, a no-op task, no results.

Celery runs in a Redis database of its own (kombu's ``unacked`` bookkeeping keys have fixed
names); its queue list and binding key hold the place's tag. (kombu's ``global_keyprefix``
would isolate the keys too, but builds a Redis client per acknowledgement: a third of the
worker's time in a profile, so a figure of the prefix, not of Celery.) The worker is
``app.Worker`` in one process (``POOL`` below), with mingle, gossip and worker heartbeats off
(they talk to other workers, of which there are none) and Celery's defaults otherwise: early
acknowledgement, prefetch multiplier 4. (The prefork pool would run the jobs in a child
process, out of reach of the job log's counter in the worker process.)
"""

from __future__ import annotations

from typing import Any

from bench.peers.base import Gate, JobLog, Payload, PeerDriver, Place, Producer
from bench.peers.redis_keys import CELERY_DB, delete_keys, key_prefix, redis_unavailable, url

__all__ = ["CeleryPeer"]

POOL = "threads"
CONCURRENCY = 8
#: kombu's Redis bookkeeping, by fixed name, in the bench's Celery database only.
KOMBU_KEYS = ("unacked", "unacked_index", "unacked_mutex", "_kombu.binding_deadlines")


def _app(place: Place, job: JobLog | None = None) -> tuple[Any, Any]:
    """(the Celery app, its no-op task) in the place's key prefix."""
    from celery import Celery

    app = Celery(place.tag, broker=url(CELERY_DB), set_as_current=False)
    app.conf.update(
        task_default_queue=key_prefix(place.tag),
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    def noop(payload: Payload) -> None:
        if job is not None:
            job.ran(payload)

    return app, app.task(name="noop")(noop)


class _Producer(Producer):
    def __init__(self, place: Place) -> None:
        self._app, self._task = _app(place)

    async def send(self, payload: Payload) -> None:
        self._task.apply_async((payload,))

    async def close(self) -> None:
        self._app.close()


class CeleryPeer(PeerDriver):
    name = "Celery"
    backend = "Redis"
    distribution = "celery"
    workers = (f"1 process: `app.Worker(pool={POOL!r}, concurrency={CONCURRENCY})`, prefetch multiplier 4, "
               "mingle/gossip/heartbeat off")
    guarantee = ("Redis transport; early acknowledgement (`task_acks_late=False`, the default): a task is "
                 "acked just before it runs, so a worker killed mid-task loses it (at-most-once); "
                 "Redis here is not persisted")

    def unavailable(self) -> str | None:
        return super().unavailable() or redis_unavailable()

    def pending(self, place: Place) -> int:
        import redis

        client = redis.Redis.from_url(url(CELERY_DB))
        return int(client.llen(key_prefix(place.tag))) + int(client.hlen("unacked"))

    def cleanup(self, place: Place) -> None:
        delete_keys(place.tag, CELERY_DB, *KOMBU_KEYS)

    def producer(self, place: Place) -> Producer:
        return _Producer(place)

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        app, _ = _app(place, job)
        worker = app.Worker(pool=POOL, concurrency=CONCURRENCY, loglevel="WARNING", quiet=True,
                            without_mingle=True, without_gossip=True, without_heartbeat=True)
        gate()
        worker.start()  # Celery's own SIGTERM handler: a warm shutdown, then start() returns
