"""Outgoing webhooks: signed, durable, retried through receiver outages and agent restarts."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otpagent import IntelligentOTPAgent
from otpagent.cli import _register_plugin_commands, cli
from otpagent.errors import ConfigError
from otpagent.protocols import Capability, DeliveryStatus
from otpagent.sinks.webhook import WebhookSink
from otpagent.sinks.webhook_target import TargetRefused, check_resolved
from tests.conftest import Outbox, wait_for
from tests.service.conftest import LiveServer, service_config
from tests.service.receiver import Receiver, free_port

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sink(url: str, **extra: Any) -> dict[str, Any]:
    section = {"plugin": "webhook", "name": "app", "url": url, "secret": SECRET, "allow_private": True,
               "timeout_seconds": 2, "poll_interval_seconds": 0.05,
               "retry": {"base_delay_seconds": 0.05, "max_delay_seconds": 0.2}}
    section.update(extra)
    return section


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


def webhook_sink(agent: IntelligentOTPAgent) -> WebhookSink:
    return next(s for s in agent.bus.sinks if isinstance(s, WebhookSink))


def test_events_are_delivered_signed_and_filtered(make_server: Callable[..., LiveServer], tmp_path: Path,
                                                  receiver: Receiver) -> None:
    config = service_config(tmp_path)
    config["sinks"] = [sink(receiver.url, events=["queued", "message.sent"])]
    live = make_server(config)

    with live.client() as api:
        message_id = api.post("/v1/messages", json={"email": "a@example.com", "content": "hi"}).json()["message_id"]
    assert wait_for(lambda: receiver.of_type("message.sent", message_id), timeout=10), receiver.dump()

    assert receiver.rejected == 0
    assert wait_for(lambda: receiver.of_type("message.queued", message_id))
    assert not receiver.of_type("message.attempt")
    sent = receiver.of_type("message.sent", message_id)[0]
    assert sent["data"]["channel"] == "email"
    headers = receiver.headers[receiver.received.index(sent)]
    assert headers["webhook-id"].startswith("evt_")
    assert headers["webhook-signature"].startswith("v1,")


def test_deliveries_survive_the_receiver_being_down(make_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    port = free_port()
    down = Receiver(SECRET, port)
    config = service_config(tmp_path)
    config["sinks"] = [sink(down.url, events=["sent"])]
    live = make_server(config)
    outbox = live.agent.storage.webhook_outbox()

    with live.client() as api:
        message_id = api.post("/v1/messages", json={"email": "a@example.com", "content": "hi"}).json()["message_id"]
    assert wait_for(lambda: any(d.attempts >= 2 for d in outbox.list(endpoint="app")), timeout=10)
    pending = outbox.list(endpoint="app")[0]
    assert pending.status is DeliveryStatus.PENDING
    assert "ConnectError" in (pending.last_error or "")

    up = Receiver(SECRET, port).start()
    try:
        assert wait_for(lambda: up.of_type("message.sent", message_id), timeout=10)
        assert wait_for(lambda: outbox.list(endpoint="app")[0].status is DeliveryStatus.DELIVERED)
    finally:
        up.stop()


def test_a_restarted_agent_resumes_from_the_outbox(make_server: Callable[..., LiveServer], tmp_path: Path,
                                                   outbox: Outbox) -> None:
    port = free_port()
    config = service_config(tmp_path)
    config["sinks"] = [sink(f"http://127.0.0.1:{port}/hooks", events=["queued", "sent"])]
    first = IntelligentOTPAgent(config)
    first.start_processing()
    sent_id = first.send_message({"email": "a@example.com", "content": "before the restart"})
    assert wait_for(lambda: bool(outbox.for_message(sent_id)))
    first.close()  # the receiver was never up: everything is still pending in the database
    # While no webhook pump runs at all, another process queues a message.
    with IntelligentOTPAgent({**config, "sinks": []}) as offline:
        queued_id = offline.send_message({"email": "b@example.com", "content": "while down"})

    receiver = Receiver(SECRET, port).start()
    try:
        make_server(config)  # a new agent on the same database

        assert wait_for(lambda: receiver.of_type("message.sent", sent_id), timeout=10), receiver.dump()
        assert wait_for(lambda: receiver.of_type("message.queued", sent_id), timeout=10)  # retries reorder
        assert wait_for(lambda: receiver.of_type("message.queued", queued_id), timeout=10)
    finally:
        receiver.stop()


def test_dead_letters_are_listed_and_retried_from_the_cli(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 500
    config = service_config(tmp_path)
    config["sinks"] = [sink(receiver.url, events=["sent"], retry={"base_delay_seconds": 0.02,
                                                                   "max_delay_seconds": 0.05, "horizon_seconds": 0.3})]
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        webhook_sink(agent).start()
        message_id = agent.send_message({"email": "a@example.com", "content": "hi"})
        outbox = agent.storage.webhook_outbox()
        assert wait_for(lambda: [d.status for d in outbox.list(endpoint="app")] == [DeliveryStatus.DEAD], timeout=10)
    _register_plugin_commands()
    runner = CliRunner()

    listed = runner.invoke(cli, ["--config", str(config_file), "webhooks", "list", "--status", "dead", "--json"])
    receiver.status = 204
    retried = runner.invoke(cli, ["--config", str(config_file), "webhooks", "retry"])
    with IntelligentOTPAgent(config) as agent:
        webhook_sink(agent).start()
        assert wait_for(lambda: receiver.of_type("message.sent", message_id), timeout=10)

    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.output.splitlines()[0])
    assert row["status"] == "dead" and row["last_error"] == "HTTP 500"
    assert retried.output.strip() == "1 deliveries queued again"


def test_replay_sends_stored_events_again(tmp_path: Path, receiver: Receiver) -> None:
    config = service_config(tmp_path)
    config["sinks"] = [sink(receiver.url, events=["queued"])]
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    with IntelligentOTPAgent(config) as agent:
        webhook_sink(agent).start()
        message_id = agent.send_message({"email": "a@example.com", "content": "hi",
                                         "scheduled_for": "2099-01-01T00:00:00Z"})
        agent.send_message({"email": "a@example.com", "content": "now"})
        assert wait_for(lambda: len(receiver.received) == 1, timeout=10)
    _register_plugin_commands()

    replayed = CliRunner().invoke(cli, ["--config", str(config_file), "webhooks", "replay", "--since", "1h"])
    with IntelligentOTPAgent(config) as agent:
        webhook_sink(agent).start()
        assert wait_for(lambda: len(receiver.received) == 2, timeout=10)

    assert replayed.output.strip() == "1 deliveries queued for replay"
    assert receiver.headers[0]["webhook-id"] == receiver.headers[1]["webhook-id"]
    assert message_id not in json.dumps(receiver.received)  # scheduled, not queued: filtered out


def test_otp_verifications_are_delivered_too(make_server: Callable[..., LiveServer], tmp_path: Path,
                                             receiver: Receiver, outbox: Outbox) -> None:
    config = service_config(tmp_path)
    config["sinks"] = [sink(receiver.url, events=["otp.verified"])]
    live = make_server(config)

    with live.client() as api:
        message_id = api.post("/v1/otp", json={"email": "v@example.com"}).json()["message_id"]
        api.post("/v1/otp/verify", json={"recipient": "v@example.com", "code": outbox.code_for(message_id)})

    assert wait_for(lambda: receiver.of_type("otp.verified"), timeout=10)
    assert receiver.of_type("otp.verified")[0]["data"]["reason"] == "verified"
    assert "code" not in json.dumps(receiver.received).replace('"reason"', "")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hooks", "http://10.0.0.5/hooks", "http://[::1]/hooks",
                                 "http://169.254.169.254/latest", "http://localhost/hooks", "ftp://example.com/x"])
def test_private_or_odd_targets_are_refused_in_config(tmp_path: Path, url: str) -> None:
    config = service_config(tmp_path)
    config["sinks"] = [{"plugin": "webhook", "url": url, "secret": SECRET}]

    with pytest.raises(ConfigError) as info:
        IntelligentOTPAgent(config)

    assert info.value.path == "sinks[0].url"


def test_a_name_resolving_to_loopback_is_refused_at_send_time() -> None:
    with pytest.raises(TargetRefused):
        check_resolved("http://localhost:9/hooks", allow_private=False)


def test_a_bad_secret_is_a_config_error(tmp_path: Path) -> None:
    config = service_config(tmp_path)
    config["sinks"] = [{"plugin": "webhook", "url": "https://hooks.example.com/x", "secret": "not-a-secret"}]

    with pytest.raises(ConfigError, match="whsec_"):
        IntelligentOTPAgent(config)


def test_backends_without_an_outbox_are_refused_by_name(tmp_path: Path) -> None:
    from otpagent.protocols import PluginContext
    from otpagent.sinks.webhook import create_webhook_sink
    from otpagent.testing import InMemoryStorage

    class Elsewhere(InMemoryStorage):
        name = "elsewhere"
        capabilities = InMemoryStorage.capabilities - {Capability.WEBHOOK_OUTBOXES}

    context = PluginContext(config_dir=tmp_path, storage=Elsewhere())
    with pytest.raises(ConfigError, match="'elsewhere' does not provide the webhook outbox capability"):
        create_webhook_sink(sink("https://hooks.example.com/x"), context)
