"""The ``http-sms`` example plugin installed like any plugin and used from config: what the core
does with each class of gateway answer, and that the token never leaks."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from otpagent import ConfigError, IntelligentOTPAgent, InvalidRequest, MessageRequest, Priority, Status
from otpagent.model import Outcome
from otpagent.plugins import describe_plugins
from tests.conftest import FakeClock
from tests.examples.conftest import RECIPIENT, agent_config, api_config, run_until
from tests.examples.fake_sms_gateway import TOKEN, FakeSmsGateway

WRONG_TOKEN = "revoked_" + "c4" * 12


def _alert(agent: IntelligentOTPAgent, channels: tuple[str, ...] = ("SMS", "BACKUP"), phone: str = RECIPIENT) -> str:
    return agent.send_message(MessageRequest(phone_number=phone, message_type="alert", content="New sign-in",
                                             priority=Priority.HIGH, channels=channels))


def _outcomes(agent: IntelligentOTPAgent, message_id: str) -> list[tuple[str, Outcome, str | None]]:
    report = agent.get_delivery_report(message_id)
    assert report is not None
    return [(a.channel, a.outcome, a.error_code) for a in report.attempt_log]


def _status(agent: IntelligentOTPAgent, message_id: str) -> Status:
    report = agent.get_delivery_report(message_id)
    assert report is not None
    return report.status


def _final(agent: IntelligentOTPAgent, message_id: str) -> bool:
    return _status(agent, message_id) in (Status.SENT, Status.FAILED)


def test_the_plugin_comes_from_its_entry_point(make_agent: Any) -> None:
    (row,) = [r for r in describe_plugins() if r["name"] == "http-sms"]
    assert (row["package"], row["status"], row["registers"]) == ("otpagent-http-sms", "loaded",
                                                                  {"channels": ["http-sms"]})
    agent = make_agent()
    assert agent.plugin_label("channels", "http-sms") == "otpagent-http-sms 0.1.0"
    assert type(agent.channels["SMS"]).__name__ == "HttpSmsChannel"


def test_a_message_goes_out_through_the_gateway(gateway: FakeSmsGateway, make_agent: Any) -> None:
    agent = make_agent()

    message_id = _alert(agent)
    run_until(agent, lambda: _final(agent, message_id))

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.SENT and report.channel == "SMS"
    (request,) = gateway.requests
    assert request.body["reference"] == message_id and report.provider_message_id == request.answer["id"]
    assert report.cost == pytest.approx(0.04)


def test_a_429_pauses_the_channel_until_retry_after_then_the_message_goes_out(
        gateway: FakeSmsGateway, make_agent: Any) -> None:
    clock = FakeClock()
    gateway.answer(RECIPIENT, 429, code="rate_limited", message="slow down", retry_after="30", times=1)
    agent = make_agent(clock=clock)
    pause = agent.capabilities.shared_state

    first = _alert(agent)
    run_until(agent, lambda: len(_outcomes(agent, first)) == 1)

    paused_at = clock.now
    assert _outcomes(agent, first) == [("SMS", Outcome.TRANSIENT, "rate_limited")]
    assert float(pause.get_state("pause:SMS") or 0) == pytest.approx(paused_at + 30)  # the dispatcher's record
    assert agent.storage.get_message(first).due_at >= paused_at + 30

    # While paused, another message for the channel is put back until the pause ends, untried.
    second = _alert(agent, phone="+447700900456")
    run_until(agent, lambda: abs(agent.storage.get_message(second).due_at - (paused_at + 30)) < 1e-6)
    assert _outcomes(agent, second) == [] and len(gateway.requests) == 1

    clock.advance(31)
    run_until(agent, lambda: _final(agent, first) and _final(agent, second))

    assert _outcomes(agent, first) == [("SMS", Outcome.TRANSIENT, "rate_limited"), ("SMS", Outcome.ACCEPTED, None)]
    assert _outcomes(agent, second) == [("SMS", Outcome.ACCEPTED, None)]
    report = agent.get_delivery_report(first)
    assert report is not None and report.attempt_log[1].started_at >= paused_at + 30 - 1e-6
    assert [r.status for r in gateway.requests] == [429, 202, 202]


def test_a_503_is_retried_then_the_message_falls_back_to_the_console_channel(
        gateway: FakeSmsGateway, make_agent: Any) -> None:
    gateway.answer(RECIPIENT, 503, code="unavailable", message="maintenance")
    agent = make_agent()

    message_id = _alert(agent)
    run_until(agent, lambda: _final(agent, message_id))

    assert _outcomes(agent, message_id) == [("SMS", Outcome.TRANSIENT, "unavailable")] * 3 + [
        ("BACKUP", Outcome.ACCEPTED, None)]
    report = agent.get_delivery_report(message_id)
    assert report is not None and report.status is Status.SENT and report.channel == "BACKUP"
    assert report.attempt_log[0].error_message == "gateway answered HTTP 503: maintenance"
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "closed"


def test_a_rejected_token_opens_the_circuit_and_later_messages_skip_the_gateway(
        gateway: FakeSmsGateway, make_agent: Any) -> None:
    agent = make_agent(api=api_config(gateway, token=WRONG_TOKEN))

    first = _alert(agent)
    run_until(agent, lambda: _final(agent, first))
    second = _alert(agent)
    run_until(agent, lambda: _final(agent, second))

    assert _outcomes(agent, first) == [("SMS", Outcome.PERMANENT, "invalid_token"), ("BACKUP", Outcome.ACCEPTED, None)]
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "open"
    assert _outcomes(agent, second) == [("BACKUP", Outcome.ACCEPTED, None)]
    assert len(gateway.requests) == 1


def test_a_400_fails_the_message_on_that_channel_with_the_gateways_code(
        gateway: FakeSmsGateway, make_agent: Any) -> None:
    gateway.answer(RECIPIENT, 400, code="invalid_recipient", message="not a mobile number")
    agent = make_agent()

    only_sms = _alert(agent, channels=("SMS",))
    run_until(agent, lambda: _final(agent, only_sms))
    with_backup = _alert(agent)
    run_until(agent, lambda: _final(agent, with_backup))

    report = agent.get_delivery_report(only_sms)
    assert report is not None and report.status is Status.FAILED
    assert _outcomes(agent, only_sms) == [("SMS", Outcome.PERMANENT, "invalid_recipient")]
    assert report.last_error == "SMS: gateway answered HTTP 400: not a mobile number [invalid_recipient]"
    assert _outcomes(agent, with_backup) == [("SMS", Outcome.PERMANENT, "invalid_recipient"),
                                             ("BACKUP", Outcome.ACCEPTED, None)]
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "closed"  # the message's fault, not the channel's


def test_the_token_never_appears_in_logs_reprs_or_errors(gateway: FakeSmsGateway, make_agent: Any, tmp_path: Any,
                                                          caplog: pytest.LogCaptureFixture,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    agent = make_agent(api=api_config(gateway, token=WRONG_TOKEN))

    message_id = agent.send_otp(RECIPIENT, channels=["SMS", "BACKUP"])
    run_until(agent, lambda: _final(agent, message_id))
    with pytest.raises(ConfigError) as exc:  # a config mistake next to the token
        IntelligentOTPAgent(agent_config(tmp_path, gateway, api=api_config(gateway, token=WRONG_TOKEN,
                                                                          timeout_seconds=-1)))

    report = agent.get_delivery_report(message_id)
    assert report is not None and report.attempt_log[0].error_code == "invalid_token"
    assert gateway.requests[0].authorization == f"Bearer {WRONG_TOKEN}"  # it was sent, and echoed back
    seen = [caplog.text, *capsys.readouterr(), str(exc.value), repr(agent.config), repr(agent.channels["SMS"]),
            repr(agent.channels["SMS"].settings), repr(report), json.dumps(agent.get_metrics(), default=str)]
    assert "HTTP Request: POST" in caplog.text  # httpx did log, at INFO
    for text in seen:
        assert WRONG_TOKEN not in text and TOKEN not in text


def test_a_text_over_the_gateways_limit_is_refused_at_enqueue_with_the_channels_reason(
        gateway: FakeSmsGateway, make_agent: Any) -> None:
    agent = make_agent(api=api_config(gateway, max_length=100))

    with pytest.raises(InvalidRequest) as exc:
        agent.send_message(MessageRequest(phone_number=RECIPIENT, message_type="alert", content="x" * 150,
                                          channels=("SMS",)))

    assert str(exc.value) == ("invalid request: [0].content: no configured channel can deliver it "
                              "(SMS: text is 150 characters; the gateway allows at most 100)")
    assert gateway.requests == []
