"""PgQueuer on the bench's PostgreSQL server, in a private schema with its own NOTIFY channel.

Run as its README shows (``PgQueuer.from_asyncpg_connection(await asyncpg.connect(...))``,
``@pgq.entrypoint``) with ``pgq run``'s defaults: one asyncio loop and one connection per
worker process, dequeues of ``batch_size=10``, unlimited concurrency per entrypoint, the
default ``durable`` tables. Enqueue is ``Queries.enqueue`` (one ``INSERT``; lists for batches).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from bench.peers.base import Gate, JobLog, Payload, Place, Producer
from bench.peers.pg_schema import DSN, PostgresPeer

__all__ = ["PgQueuerPeer"]

ENTRYPOINT = "noop"


def _settings_env(place: Place) -> None:
    """PgQueuer reads its object names once from ``PGQUEUER_*``: point them at the place."""
    from pgqueuer.domain.settings import db_settings

    os.environ["PGQUEUER_SCHEMA"] = place.tag
    os.environ["PGQUEUER_CHANNEL"] = f"ch_{place.tag}"
    db_settings.cache_clear()


async def _connect(place: Place) -> Any:
    import asyncpg

    return await asyncpg.connect(DSN, server_settings={"application_name": place.tag})


class _Producer(Producer):
    def __init__(self, place: Place) -> None:
        self._place = place
        self._conn: Any = None
        self._queries: Any = None

    async def open(self) -> None:
        from pgqueuer import Queries

        _settings_env(self._place)
        self._conn = await _connect(self._place)
        self._queries = Queries.from_asyncpg_connection(self._conn)

    async def send(self, payload: Payload) -> None:
        await self._queries.enqueue(ENTRYPOINT, json.dumps(payload).encode())

    async def send_batch(self, batch: list[Payload]) -> None:
        await self._queries.enqueue([ENTRYPOINT] * len(batch), [json.dumps(p).encode() for p in batch],
                                    [0] * len(batch))

    async def close(self) -> None:
        await self._conn.close()


class PgQueuerPeer(PostgresPeer):
    name = "PgQueuer"
    distribution = "pgqueuer"
    workers = ("1 process: one asyncio loop on one asyncpg connection, `batch_size=10` per dequeue, "
               "no concurrency limit (the `pgq run` defaults)")
    guarantee = ("`durable` tables (all logged); a job is marked picked when dequeued and deleted into "
                 "the log table after it ran, those completions flushed in batches (10 or 0.1 s); a "
                 "picked job whose heartbeat stops for `heartbeat_timeout` (30 s) is picked again: "
                 "at-least-once")

    def prepare(self, place: Place) -> None:
        asyncio.run(self._install(place))

    @staticmethod
    async def _install(place: Place) -> None:
        from pgqueuer import Queries
        from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
        from pgqueuer.domain.settings import DBSettings

        settings = DBSettings(db_schema=place.tag, channel=f"ch_{place.tag}")
        conn = await _connect(place)
        try:
            queries = Queries.from_asyncpg_connection(conn)
            queries.qbe = QueryBuilderEnvironment(settings=settings)
            await queries.install()
        finally:
            await conn.close()

    def pending(self, place: Place) -> int:
        return self.count(place, "SELECT count(*) FROM {}.pgqueuer")

    def finished(self, place: Place) -> int | None:
        return self.count(place, "SELECT count(*) FROM {}.pgqueuer_log WHERE status = 'successful'")

    def producer(self, place: Place) -> Producer:
        return _Producer(place)

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        asyncio.run(self._work(place, job, gate))

    @staticmethod
    async def _work(place: Place, job: JobLog, gate: Gate) -> None:
        from pgqueuer import PgQueuer
        from pgqueuer.models import Job

        _settings_env(place)
        pgq = PgQueuer.from_asyncpg_connection(await _connect(place))

        async def noop(item: Job) -> None:
            job.ran(json.loads(item.payload or b"{}"))

        pgq.entrypoint(ENTRYPOINT)(noop)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, pgq.shutdown.set)
        gate()
        await pgq.run()

