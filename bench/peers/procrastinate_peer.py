"""procrastinate on the bench's PostgreSQL server, its schema applied in a private schema.

Every connection's ``search_path`` is the place's schema, so procrastinate's unqualified
tables and functions live there; the queue is named after the place and workers listen only
to it, so its database-wide NOTIFY channel (``procrastinate_queue_v1#<queue>``) is private too.
An async no-op task; worker options are procrastinate's defaults but ``concurrency``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.base import Gate, JobLog, Payload, Place, Producer
from bench.peers.pg_schema import DSN, PostgresPeer, create_schema

__all__ = ["ProcrastinatePeer"]

#: Jobs one worker process runs at once (procrastinate's default is 1; async tasks may share
#: the loop, and otpagent's worker runs 16 dispatcher threads).
CONCURRENCY = 16


def _app(place: Place, job: JobLog | None = None) -> tuple[Any, Any]:
    """(app, its no-op task) on the place's schema."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=DSN, kwargs={"options": f"-c search_path={place.tag}", "application_name": place.tag})
    app = procrastinate.App(connector=connector)

    async def noop(**payload: Any) -> None:
        if job is not None:
            job.ran(payload)

    return app, app.task(name="noop", queue=place.tag)(noop)


class _Producer(Producer):
    def __init__(self, place: Place) -> None:
        self._app, self._task = _app(place)

    async def open(self) -> None:
        await self._app.open_async()

    async def send(self, payload: Payload) -> None:
        await self._task.defer_async(**payload)

    async def send_batch(self, batch: list[Payload]) -> None:
        await self._task.batch_defer_async(*batch)

    async def close(self) -> None:
        await self._app.close_async()


class ProcrastinatePeer(PostgresPeer):
    name = "procrastinate"
    distribution = "procrastinate"
    workers = (f"1 process: one asyncio loop, `concurrency={CONCURRENCY}` (default 1), LISTEN/NOTIFY on, "
               "jobs kept after success (`delete_jobs=never`, the default)")
    guarantee = ("all tables logged; a job is `doing` from its fetch until one UPDATE marks it done; jobs "
                 "left `doing` by a killed worker stay there until a periodic task of yours retries them "
                 "(docs: howto/production/retry_stalled_jobs): at-most-once unless you add that task")

    def prepare(self, place: Place) -> None:
        create_schema(place.tag)
        asyncio.run(self._apply_schema(place))

    @staticmethod
    async def _apply_schema(place: Place) -> None:
        app, _ = _app(place)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    def pending(self, place: Place) -> int:
        return self.count(place, "SELECT count(*) FROM {}.procrastinate_jobs WHERE status IN ('todo', 'doing')")

    def finished(self, place: Place) -> int | None:
        return self.count(place, "SELECT count(*) FROM {}.procrastinate_jobs WHERE status = 'succeeded'")

    def producer(self, place: Place) -> Producer:
        return _Producer(place)

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        asyncio.run(self._work(place, job, gate))

    @staticmethod
    async def _work(place: Place, job: JobLog, gate: Gate) -> None:
        app, _ = _app(place, job)
        async with app.open_async():
            gate()
            await app.run_worker_async(queues=[place.tag], concurrency=CONCURRENCY, install_signal_handlers=True)
