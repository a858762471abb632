"""otpagent itself, driven through the peer harness exactly like the peers it is compared with.

The worker process is what ``otpagent run`` is (``cli.run``: build the agent from its config,
``start_processing()``, wait for SIGTERM, stop cleanly), with the benchmark config of
``bench.common``: the console channel with ``quiet: true`` and no sinks, the default dispatcher threads.
Its "job" is the whole dispatch: claim, route, console send, record the attempt, its outcome
and its events; the count is the dispatcher's own ``sent`` + ``failed`` counter, which moves
only after the outcome is committed. For latency the console channel also writes its outbox
(one JSON line per send, with the send time), and the enqueue time rides in the body.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from bench.common import agent_config, console_channel
from bench.peers.base import Gate, JobLog, Payload, PeerDriver, Place, Producer
from bench.peers.pg_schema import PostgresPeer
from otpagent.config import DispatcherConfig

__all__ = ["OtpagentPostgres", "OtpagentSqlite"]

#: ``dispatcher.workers`` left at its default, as ``otpagent run`` has it.
WORKERS = DispatcherConfig().workers
_MARK = " [t="
_OPEN = ("queued", "scheduled", "retrying", "sending")


def request(payload: Payload) -> dict[str, Any]:
    body = payload["body"]
    if payload["t"] > 0:
        body = f"{body}{_MARK}{payload['t']!r}]"
    return {"phone_number": payload["to"], "message_type": "notification", "content": body, "priority": "HIGH"}


class _AgentProducer(Producer):
    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._agent: Any = None

    async def open(self) -> None:
        from otpagent import IntelligentOTPAgent

        self._agent = IntelligentOTPAgent(self._config)

    async def send(self, payload: Payload) -> None:
        self._agent.send_message(request(payload))

    async def send_batch(self, batch: list[Payload]) -> None:
        self._agent.send_bulk_messages([request(p) for p in batch])

    async def close(self) -> None:
        self._agent.close()


class _Otpagent(PeerDriver):
    distribution = "otpagent"
    workers = (f"1 process: {WORKERS} dispatcher threads (`dispatcher.workers`, the default), 0.2 s idle poll "
               "(the default; PostgreSQL also wakes on LISTEN/NOTIFY)")
    guarantee = ("every attempt, outcome and event recorded; a message is leased while sent and "
                 "re-claimed when its lease runs out (at-least-once towards the provider)")

    def config(self, place: Place, *, outbox: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def as_run_has_it(config: dict[str, Any]) -> dict[str, Any]:
        """The bench config with the dispatcher's defaults (``otpagent run`` with no tuning: 16
        workers, 0.2 s idle poll), as the peers run theirs."""
        config["dispatcher"] = {k: v for k, v in config["dispatcher"].items() if k != "poll_interval_seconds"}
        return config

    def producer(self, place: Place) -> Producer:
        return _AgentProducer(self.config(place))

    def work(self, place: Place, job: JobLog, gate: Gate) -> None:
        from otpagent import IntelligentOTPAgent
        from otpagent.gcsettle import settle

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with IntelligentOTPAgent(self.config(place, outbox=job.latency_path is not None)) as agent:
            counters = agent.dispatcher.counters
            job.count_with(lambda: counters["sent"] + counters["failed"])
            settle()  # as `otpagent run` does before it starts processing
            gate()
            agent.start_processing()
            while not stop.wait(0.5):
                pass

    def latencies(self, place: Place) -> list[float]:
        """From the console outbox: its ``at`` minus the enqueue time carried in the body."""
        path = place.path / "outbox.jsonl"
        out: list[float] = []
        if not path.exists():
            return out
        for line in path.read_text().split("\n")[:-1]:
            entry = json.loads(line)
            body = entry["body"]
            if _MARK in body:
                started = float(body.rsplit(_MARK, 1)[1].rstrip("]"))
                out.append((entry["at"] - started) * 1000.0)
        return out


class OtpagentSqlite(_Otpagent):
    name = "otpagent (SQLite)"
    backend = "SQLite"
    guarantee = _Otpagent.guarantee + "; SQLite WAL, `synchronous: full` (fsync per commit)"

    def unavailable(self) -> str | None:
        return None

    def config(self, place: Place, *, outbox: bool = False) -> dict[str, Any]:
        channel = console_channel(outbox=place.path / "outbox.jsonl" if outbox else None)
        return self.as_run_has_it(agent_config(place.path / "otpagent.db", channels={"DEV": channel}))

    def pending(self, place: Place) -> int:
        """Open messages, with the lone enqueues a claim has not moved out of intake yet (each
        a queued message: ``otpagent.storage.sqlite_intake``)."""
        return self._query(place, f"SELECT (SELECT count(*) FROM messages WHERE status IN {_OPEN}) "
                                  "+ (SELECT count(*) FROM intake)")

    def finished(self, place: Place) -> int | None:
        return self._query(place, "SELECT count(*) FROM messages WHERE status = 'sent'")

    @staticmethod
    def _query(place: Place, query: str) -> int:
        import sqlite3

        db = place.path / "otpagent.db"
        if not db.exists():
            return 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


class OtpagentPostgres(_Otpagent, PostgresPeer):
    name = "otpagent (PostgreSQL)"
    distribution = "otpagent-postgres"
    guarantee = _Otpagent.guarantee + "; PostgreSQL, all tables logged, `synchronous_commit` as the server has it"

    def config(self, place: Place, *, outbox: bool = False) -> dict[str, Any]:
        from bench.parts.postgres import pg_config

        return self.as_run_has_it(pg_config(place.tag, outbox=place.path / "outbox.jsonl" if outbox else None))

    def app_name(self, place: Place) -> str:
        return f"otpagent:{place.tag}"[:63]  # what otpagent_postgres names its connections

    def prepare(self, place: Place) -> None:
        from otpagent import IntelligentOTPAgent

        IntelligentOTPAgent(self.config(place)).close()  # migrates the schema

    def pending(self, place: Place) -> int:
        return self.count(place, f"SELECT count(*) FROM {{}}.messages WHERE status IN {_OPEN}")

    def finished(self, place: Place) -> int | None:
        return self.count(place, "SELECT count(*) FROM {}.messages WHERE status = 'sent'")
