"""The SendGrid plugin inside the real IntelligentOTPAgent: the SDK sends to the fake SendGrid API
over loopback, the agent retries and falls back, and signed webhook events move messages on."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest

import otpagent_console.plugin
import otpagent_sendgrid.plugin
from otpagent import IntelligentOTPAgent, MessageRequest, Status, builtins, hookspecs
from otpagent.model import Outcome
from otpagent.plugins import Registry, build_registry
from tests.sendgrid.conftest import RECIPIENT
from tests.sendgrid.fake_sendgrid import FakeSendGrid
from tests.sendgrid.signing import EventSigner, event
from tests.sendgrid.webhook_app import LoopbackServer, post_events


def _registry() -> Registry:
    """Core built-ins, console and sendgrid only, whatever else is installed."""
    pm = pluggy.PluginManager("otpagent")
    pm.add_hookspecs(hookspecs)
    for module in (builtins, otpagent_console.plugin, otpagent_sendgrid.plugin):
        pm.register(module)
    return build_registry(pm)


@pytest.fixture
def start_agent(
    tmp_path: Path, fake: FakeSendGrid, signer: EventSigner
) -> Iterator[Callable[..., IntelligentOTPAgent]]:
    agents: list[IntelligentOTPAgent] = []

    def start(**api_config: Any) -> IntelligentOTPAgent:
        config = {
            "storage": {"path": str(tmp_path / "agent.db")},
            "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
            "channels": {
                "EMAIL": {"plugin": "sendgrid-email", "cost": 0.0006, "api_config": {
                    "api_key": fake.api_key, "from": "no-reply@example.com", "from_name": "Acme",
                    "base_url": fake.base_url, "timeout_seconds": 2, "webhook_public_key": signer.public_key,
                    **api_config}},
                "BACKUP": {"plugin": "console", "kind": "email", "quiet": True,
                           "outbox": str(tmp_path / "outbox.jsonl")},
            },
            "routing": {"strategy": "priority"},
            "sinks": [],
            "server": {"public_url": "https://otp.example"},
            "otp": {"key_file": str(tmp_path / "otpagent.key")},
        }
        agent = IntelligentOTPAgent(config=config, registry=_registry())
        agents.append(agent)
        agent.start_processing()
        return agent

    yield start
    for agent in agents:
        agent.close()


def _send_otp(agent: IntelligentOTPAgent) -> str:
    return agent.send_otp(email=RECIPIENT, channels=["EMAIL", "BACKUP"])


def _otp_sent_through_sendgrid(agent: IntelligentOTPAgent, fake: FakeSendGrid) -> tuple[str, str]:
    """Send an OTP, wait until SendGrid accepted it; return our id and SendGrid's X-Message-Id."""
    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)
    provider_id = fake.sent()[0].message_id
    assert provider_id is not None
    return message_id, provider_id


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _outbox(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_otp_email_arrives_through_sendgrid_and_its_code_verifies(start_agent, fake):
    agent = start_agent()

    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.SENT and report.channel == "EMAIL"
    [request] = fake.sent()
    assert report.provider_message_id == request.message_id
    assert request.body["custom_args"] == {"otpagent_message_id": message_id}
    text = next(c["value"] for c in request.body["content"] if c["type"] == "text/plain")
    code = re.search(r"^\s+(\d{6})$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert agent.verify_otp(RECIPIENT, code) == (True, "verified")


def test_a_429_is_retried_after_the_reset_and_then_accepted(start_agent, fake):
    fake.rate_limit(RECIPIENT, reset_in=0)
    agent = start_agent()

    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.SENT and report.channel == "EMAIL"
    assert [(a.channel, a.outcome, a.error_code) for a in report.attempt_log] == [
        ("EMAIL", Outcome.TRANSIENT, "429"), ("EMAIL", Outcome.ACCEPTED, None)]


def test_a_rejected_api_key_falls_back_and_opens_the_channels_circuit(start_agent, fake, tmp_path):
    agent = start_agent(api_key="SG.revoked")

    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.channel == "BACKUP"
    first = report.attempt_log[0]
    assert (first.channel, first.outcome, first.error_code) == ("EMAIL", Outcome.PERMANENT, "401")
    assert "authorization grant is invalid" in (first.error_message or "")
    assert agent.get_metrics()["channels"]["EMAIL"]["circuit"] == "open"
    assert [m["message_id"] for m in _outbox(tmp_path)] == [message_id]


def test_an_invalid_recipient_400_falls_back_but_leaves_the_circuit_closed(start_agent, fake, tmp_path):
    fake.fail(RECIPIENT, 400)
    agent = start_agent()

    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.channel == "BACKUP"
    assert report.attempt_log[0].error_code == "400"
    assert "field: personalizations.0.to.0.email" in (report.attempt_log[0].error_message or "")
    assert agent.get_metrics()["channels"]["EMAIL"]["circuit"] == "closed"


def test_server_errors_exhaust_the_retry_budget_then_fall_back(start_agent, fake, tmp_path):
    fake.fail(RECIPIENT, 503, times=3)
    agent = start_agent()

    message_id = _send_otp(agent)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.channel == "BACKUP"
    assert [a.error_code for a in report.attempt_log if a.channel == "EMAIL"] == ["503", "503", "503"]


def test_delivered_and_open_events_move_the_message_forward(start_agent, fake, signer):
    agent = start_agent()
    message_id, provider_id = _otp_sent_through_sendgrid(agent, fake)

    body, headers = signer.request([event("delivered", provider_id=provider_id, message_id=message_id),
                                    event("open", provider_id=provider_id, message_id=message_id)])
    response = post_events(agent, body, headers)

    assert response.status_code == 200
    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.READ


def test_a_late_deferred_event_does_not_undo_delivered(start_agent, fake, signer):
    agent = start_agent()
    message_id, provider_id = _otp_sent_through_sendgrid(agent, fake)
    body, headers = signer.request([event("delivered", provider_id=provider_id, message_id=message_id)])
    post_events(agent, body, headers)

    body, headers = signer.request([event("deferred", provider_id=provider_id, message_id=message_id)])
    response = post_events(agent, body, headers)

    assert response.json()["unchanged"] == 1
    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.DELIVERED


def test_a_bounce_event_sends_the_otp_on_to_the_fallback_channel(start_agent, fake, signer, tmp_path):
    agent = start_agent()
    message_id, provider_id = _otp_sent_through_sendgrid(agent, fake)

    bounce = event("bounce", provider_id=provider_id, message_id=message_id, type="bounce", status="5.1.1",
                   reason="550 5.1.1 The email account that you tried to reach does not exist.")
    body, headers = signer.request([bounce])
    response = post_events(agent, body, headers)
    assert response.status_code == 200
    assert _wait_for(lambda: len(_outbox(tmp_path)) == 1)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.channel == "BACKUP"
    email_attempt = next(a for a in report.attempt_log if a.channel == "EMAIL")
    assert email_attempt.delivery_status is Status.UNDELIVERED
    assert re.search(r"\b\d{6}\b", _outbox(tmp_path)[0]["body"])


def test_a_replayed_bounce_does_not_send_the_message_twice(start_agent, fake, signer, tmp_path):
    agent = start_agent()
    message_id, provider_id = _otp_sent_through_sendgrid(agent, fake)
    bounce = event("bounce", provider_id=provider_id, message_id=message_id)
    body, headers = signer.request([bounce])
    post_events(agent, body, headers)
    assert _wait_for(lambda: len(_outbox(tmp_path)) == 1)

    body, headers = signer.request([bounce])
    response = post_events(agent, body, headers)
    assert agent.wait_until_idle(10)

    assert response.json()["duplicates"] == 1
    assert len(_outbox(tmp_path)) == 1


def test_an_alert_request_with_only_an_email_address_goes_out_through_sendgrid(start_agent, fake):
    agent = start_agent()

    request = MessageRequest(email=RECIPIENT, message_type="alert", content="New sign-in from Paris",
                             priority="LOW", channels=["EMAIL"])

    message_id = agent.send_message(request)
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.channel == "EMAIL"
    assert fake.sent()[0].body["subject"] == "Alert from Acme"


def test_a_signed_batch_over_real_http_reaches_the_agent(start_agent, fake, signer):
    agent = start_agent()
    message_id, provider_id = _otp_sent_through_sendgrid(agent, fake)
    body, headers = signer.request([event("delivered", provider_id=provider_id, message_id=message_id)])

    with LoopbackServer(agent) as url:
        response = httpx.post(url, content=body, headers=headers, timeout=5)
        forged = httpx.post(url, content=body.replace(b"delivered", b"bounce"), headers=headers, timeout=5)

    assert (response.status_code, forged.status_code) == (200, 403)
    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.DELIVERED
