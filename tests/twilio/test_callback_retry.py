"""A callback whose write fails is answered 500 and remembered by nobody; Twilio's retry of the
very same callback (same idempotency token) then applies it. On SQLite and on PostgreSQL, the
failure is real: a trigger in the database refuses the write, inside the callback's transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from otpagent import MessageRequest, Priority, Status
from tests.contract.backends import PG_DSN, drop_schema, new_schema_name, require_postgres
from tests.twilio.conftest import RECIPIENT, callback_app, dispatch
from tests.twilio.fake_twilio import FakeTwilio

TOKEN = {"I-Twilio-Idempotency-Token": "5f0c8e6a9b2d4c31"}


class Trigger:
    """Makes the database refuse to store events of one type, until removed."""

    def __init__(self, backend: str, where: str) -> None:
        self.backend, self.where = backend, where

    def install(self, event_type: str) -> None:
        if self.backend == "sqlite":
            with sqlite3.connect(self.where) as conn:
                conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = '{event_type}' "
                             "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
            return
        with _pg() as conn:
            conn.execute(f'CREATE FUNCTION "{self.where}".refuse() RETURNS trigger LANGUAGE plpgsql AS '
                         "$$ BEGIN RAISE EXCEPTION 'refused by the test trigger'; END $$")
            conn.execute(f'CREATE TRIGGER refuse BEFORE INSERT ON "{self.where}".events FOR EACH ROW '
                         f"WHEN (NEW.type = '{event_type}') EXECUTE FUNCTION \"{self.where}\".refuse()")

    def remove(self) -> None:
        if self.backend == "sqlite":
            with sqlite3.connect(self.where) as conn:
                conn.execute("DROP TRIGGER refuse")
            return
        with _pg() as conn:
            conn.execute(f'DROP TRIGGER refuse ON "{self.where}".events')


def _pg() -> Any:
    import psycopg

    return psycopg.connect(PG_DSN, autocommit=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, Any], Trigger]]:
    """The agent's storage section, and a trigger on the same database."""
    if request.param == "sqlite":
        path = str(tmp_path / "otpagent.db")
        yield {"backend": "sqlite", "path": path}, Trigger("sqlite", path)
        return
    require_postgres()
    schema = new_schema_name()
    yield {"backend": "postgres", "dsn": PG_DSN, "schema": schema}, Trigger("postgres", schema)
    drop_schema(schema)


def _post(fake: FakeTwilio, agent: Any, sid: str, status: str) -> httpx.Response:
    """Twilio's callback for ``sid``, signed, through the mounted route; a 500 comes back as one."""
    url, params = fake.status_callback(sid, status)
    parts = urlsplit(url)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=callback_app(agent), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
            return await client.post(f"{parts.path}?{parts.query}", data=params,
                                     headers={"X-Twilio-Signature": fake.sign(url, params), **TOKEN})

    return asyncio.run(go())


@pytest.mark.parametrize(("twilio_status", "refused_event", "then"), [
    ("delivered", "delivered", Status.DELIVERED),
    ("undelivered", "fallback", Status.SENT),  # falls back to BACKUP, which sends it
])
def test_a_callback_whose_write_fails_is_applied_by_twilios_retry(
        fake: FakeTwilio, make_agent: Callable[..., Any], backend: tuple[dict[str, Any], Trigger],
        twilio_status: str, refused_event: str, then: Status) -> None:
    storage, trigger = backend
    agent = make_agent(storage=storage)
    message_id = agent.send_message(MessageRequest(phone_number=RECIPIENT, message_type="alert", content="New login",
                                                   priority=Priority.HIGH, channels=("SMS", "BACKUP")))
    report = dispatch(agent, message_id)
    assert (report.status, report.channel) == (Status.SENT, "SMS")
    sid = report.provider_message_id

    trigger.install(refused_event)
    failed = _post(fake, agent, sid, twilio_status)
    after_failure = agent.get_delivery_report(message_id)
    trigger.remove()
    retried = _post(fake, agent, sid, twilio_status)
    assert agent.wait_until_idle(10)
    final = agent.get_delivery_report(message_id)

    assert failed.status_code == 500
    assert (after_failure.status, after_failure.attempt_log[-1].delivery_status) == (Status.SENT, None)
    assert [e.type for e in after_failure.history].count(refused_event) == 0
    assert retried.status_code == 204
    assert final.status is then
    assert final.attempt_log[0].delivery_status is Status(twilio_status)
    assert [e.type for e in final.history].count(refused_event) == 1
    if refused_event == "fallback":
        assert final.channel == "BACKUP"
