"""The ``webhook`` sink end to end on PostgreSQL: a served agent delivers signed events to a
receiver on 127.0.0.1 that verifies Standard Webhooks signatures, through receiver downtime, an
agent restart, dead-lettering and the CLI."""

from __future__ import annotations

import base64
import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otpagent import IntelligentOTPAgent
from otpagent.cli import _register_plugin_commands, cli
from otpagent.protocols import DeliveryStatus
from otpagent.sinks.webhook import WebhookSink
from tests.conftest import Outbox, wait_for
from tests.contract.backends import PG_DSN
from tests.service.conftest import LiveServer, service_config
from tests.service.receiver import Receiver, free_port

pytestmark = pytest.mark.postgres

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def postgres_config(tmp_path: Path, schema: str, url: str, events: list[str]) -> dict[str, Any]:
    config = service_config(tmp_path)
    config["storage"] = {"backend": "postgres", "dsn": PG_DSN, "schema": schema}
    config["sinks"] = [{"plugin": "webhook", "name": "app", "url": url, "secret": SECRET, "allow_private": True,
                        "timeout_seconds": 2, "poll_interval_seconds": 0.05, "events": events,
                        "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.2}}]
    return config


@pytest.fixture
def make_server(pg_schema: str) -> Iterator[Callable[[dict[str, Any]], LiveServer]]:
    started: list[tuple[LiveServer, IntelligentOTPAgent]] = []

    def make(config: dict[str, Any]) -> LiveServer:
        agent = IntelligentOTPAgent(config)
        live = LiveServer(agent).__enter__()
        started.append((live, agent))
        return live

    yield make
    for live, agent in reversed(started):
        live.__exit__(None, None, None)
        agent.close()


def test_the_webhook_sink_delivers_signed_events_from_postgres(
        make_server: Callable[[dict[str, Any]], LiveServer], tmp_path: Path, pg_schema: str) -> None:
    receiver = Receiver(SECRET).start()
    try:
        live = make_server(postgres_config(tmp_path, pg_schema, receiver.url, ["queued", "message.sent"]))
        with live.client() as api:
            message_id = api.post("/v1/messages", json={"email": "a@example.com", "content": "hi"}
                                  ).json()["message_id"]

        assert wait_for(lambda: bool(receiver.of_type("message.sent", message_id)), timeout=15), receiver.dump()
        assert wait_for(lambda: bool(receiver.of_type("message.queued", message_id)), timeout=5)
    finally:
        receiver.stop()

    assert receiver.rejected == 0
    assert all(h["webhook-id"].startswith("evt_") and h["webhook-signature"].startswith("v1,")
               for h in receiver.headers)
    assert not receiver.of_type("message.attempt")


def test_webhooks_survive_receiver_downtime_and_an_agent_restart(
        make_server: Callable[[dict[str, Any]], LiveServer], tmp_path: Path, pg_schema: str) -> None:
    port = free_port()
    config = postgres_config(tmp_path, pg_schema, f"http://127.0.0.1:{port}/hooks", ["queued", "sent"])
    with IntelligentOTPAgent(config) as first:
        first.start_processing()
        sent_id = first.send_message({"email": "a@example.com", "content": "before the restart"})
        outbox = first.storage.webhook_outbox()
        assert wait_for(lambda: any(d.attempts >= 2 for d in outbox.list(endpoint="app")), timeout=15)
        failing = outbox.list(endpoint="app")
    # While no webhook pump runs at all, another process queues a message.
    with IntelligentOTPAgent({**config, "sinks": []}) as offline:
        queued_id = offline.send_message({"email": "b@example.com", "content": "while down"})

    receiver = Receiver(SECRET, port).start()
    try:
        live = make_server(config)  # a new agent on the same database
        outbox = live.agent.storage.webhook_outbox()
        expected = {("message.sent", sent_id), ("message.queued", sent_id), ("message.queued", queued_id),
                    ("message.sent", queued_id)}
        assert wait_for(lambda: all(receiver.of_type(t, m) for t, m in expected), timeout=15), receiver.dump()
        assert wait_for(lambda: all(d.status is DeliveryStatus.DELIVERED for d in outbox.list(endpoint="app")))
    finally:
        receiver.stop()

    assert all(d.status is DeliveryStatus.PENDING for d in failing)
    assert any("ConnectError" in (d.last_error or "") for d in failing)
    assert receiver.rejected == 0
    assert max(Counter(h["webhook-id"] for h in receiver.headers).values()) == 1
    assert len(receiver.received) == 4


def test_dead_letters_are_listed_and_retried_from_the_cli(tmp_path: Path, pg_schema: str) -> None:
    receiver = Receiver(SECRET).start()
    receiver.status = 500
    config = postgres_config(tmp_path, pg_schema, receiver.url, ["sent"])
    config["sinks"][0]["retry"] = {"base_delay_seconds": 0.02, "max_delay_seconds": 0.05, "horizon_seconds": 0.3}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    try:
        with IntelligentOTPAgent(config) as agent:
            agent.start_processing()
            message_id = agent.send_message({"email": "a@example.com", "content": "hi"})
            outbox = agent.storage.webhook_outbox()
            assert wait_for(lambda: [d.status for d in outbox.list(endpoint="app")] == [DeliveryStatus.DEAD],
                            timeout=15)
        _register_plugin_commands()
        runner = CliRunner()

        listed = runner.invoke(cli, ["--config", str(config_file), "webhooks", "list", "--status", "dead", "--json"])
        receiver.status = 204
        retried = runner.invoke(cli, ["--config", str(config_file), "webhooks", "retry"])
        with IntelligentOTPAgent(config) as agent:
            next(s for s in agent.bus.sinks if isinstance(s, WebhookSink)).start()
            assert wait_for(lambda: bool(receiver.of_type("message.sent", message_id)), timeout=15)
    finally:
        receiver.stop()

    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.output.splitlines()[0])
    assert (row["status"], row["last_error"]) == ("dead", "HTTP 500")
    assert retried.output.strip() == "1 deliveries queued again"


def test_otp_endpoints_on_postgres_run_on_the_thread_pool(
        make_server: Callable[[dict[str, Any]], LiveServer], tmp_path: Path, pg_schema: str) -> None:
    """PostgreSQL does not gather writes (its own group commit merges concurrent ones), so the
    OTP endpoints keep the thread pool; codes issue, deliver and verify through it."""
    config = service_config(tmp_path, limits={"otp_send_per_key": {"per_minute": 600, "burst": 50}})
    config["storage"] = {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema}
    live = make_server(config)
    assert live.app.state.service.batcher is None
    numbers = [f"+4477009003{i:02d}" for i in range(6)]
    outbox = Outbox(tmp_path / "outbox.jsonl")
    with live.client() as api:
        ids = [api.post("/v1/otp", json={"phone_number": n}).json()["message_id"] for n in numbers]
        codes = [outbox.code_for(message_id, timeout=15) for message_id in ids]
        answers = [api.post("/v1/otp/verify", json={"recipient": n, "code": c}).json()
                   for n, c in zip(numbers, codes, strict=True)]
    assert answers == [{"verified": True, "reason": "verified"}] * len(numbers)
