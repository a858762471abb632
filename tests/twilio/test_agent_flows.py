"""End to end through IntelligentOTPAgent: what the core does with each Twilio error class."""

from __future__ import annotations

from typing import Any

from otpagent import MessageRequest, Priority, Status
from otpagent.model import Outcome
from tests.twilio.conftest import OTP_TEMPLATE, RECIPIENT, api_config, dispatch
from tests.twilio.fake_twilio import FakeTwilio
from tests.twilio.twilio_api import ERROR_MESSAGES


def _alert(agent: Any, phone: str = RECIPIENT, channels: tuple[str, ...] = ("SMS", "BACKUP")) -> str:
    return str(agent.send_message(MessageRequest(phone_number=phone, message_type="alert", content="Alert!",
                                                 priority=Priority.HIGH, channels=channels)))


def _outcomes(report: Any) -> list[tuple[str, Outcome, str | None]]:
    return [(a.channel, a.outcome, a.error_code) for a in report.attempt_log]


def test_a_429_is_retried_on_the_same_channel_after_retry_after(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    fake.fail(RECIPIENT, 20429, retry_after="1", times=1)
    agent = make_agent()

    report = dispatch(agent, _alert(agent))

    assert report.status is Status.SENT and report.channel == "SMS"
    assert _outcomes(report) == [("SMS", Outcome.TRANSIENT, "20429"), ("SMS", Outcome.ACCEPTED, None)]
    assert report.attempt_log[0].error_message == "Too Many Requests"
    first, second = fake.requests_to(RECIPIENT)
    assert second.at - first.at >= 0.95


def test_server_errors_are_retried_with_backoff_until_twilio_recovers(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    fake.fail(RECIPIENT, 20503, times=1)
    fake.fail("+447700900999", 20500, times=2)
    agent = make_agent()

    one = dispatch(agent, _alert(agent))
    two = dispatch(agent, _alert(agent, "+447700900999"))

    assert _outcomes(one) == [("SMS", Outcome.TRANSIENT, "20503"), ("SMS", Outcome.ACCEPTED, None)]
    assert [a.outcome for a in two.attempt_log] == [Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.ACCEPTED]
    assert two.status is Status.SENT and two.channel == "SMS"


def test_when_retries_run_out_the_message_falls_back(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    fake.fail(RECIPIENT, 20500)
    agent = make_agent()

    report = dispatch(agent, _alert(agent))

    assert [a.channel for a in report.attempt_log] == ["SMS", "SMS", "SMS", "BACKUP"]
    assert report.channel == "BACKUP" and report.status is Status.SENT
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "closed"


def test_an_invalid_number_falls_back_at_once_recording_twilios_code_and_message(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    agent = make_agent()

    report = dispatch(agent, _alert(agent, "+15005550001"))

    assert _outcomes(report) == [("SMS", Outcome.PERMANENT, "21211"), ("BACKUP", Outcome.ACCEPTED, None)]
    assert report.attempt_log[0].error_message == "The 'To' number +15005550001 is not a valid phone number."
    assert report.channel == "BACKUP"
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "closed"


def test_bad_credentials_open_the_circuit_and_later_messages_skip_twilio(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    twilio = {"SMS": {"plugin": "twilio-sms", "api_config": api_config(fake, auth_token="revoked")}}
    agent = make_agent(twilio=twilio)

    first = dispatch(agent, _alert(agent))
    second = dispatch(agent, _alert(agent))

    assert _outcomes(first) == [("SMS", Outcome.PERMANENT, "20003"), ("BACKUP", Outcome.ACCEPTED, None)]
    assert agent.get_metrics()["channels"]["SMS"]["circuit"] == "open"
    assert [a.channel for a in second.attempt_log] == ["BACKUP"]
    assert len(fake.requests) == 1


def test_whatsapp_outside_the_session_window_falls_back_to_sms(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    fake.fail(f"whatsapp:{RECIPIENT}", 63016)
    twilio = {"WHATSAPP": {"plugin": "twilio-whatsapp", "api_config": api_config(fake)},
              "SMS": {"plugin": "twilio-sms", "api_config": api_config(fake)}}
    agent = make_agent(twilio=twilio)

    report = dispatch(agent, _alert(agent, channels=("WHATSAPP", "SMS")))

    assert [a.channel for a in report.attempt_log] == ["WHATSAPP", "SMS"]
    assert report.attempt_log[0].error_message == ERROR_MESSAGES[63016]
    assert report.channel == "SMS"


def test_an_otp_sent_over_twilio_sms_verifies_with_the_code_twilio_received(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    agent = make_agent()

    message_id = agent.send_otp(RECIPIENT, channels=["SMS"])
    report = dispatch(agent, message_id)

    assert report.status is Status.SENT and report.provider_message_id.startswith("SM")
    body = fake.requests_to(RECIPIENT)[0].field("Body") or ""
    code = "".join(ch for ch in body.split("code is ")[1][:12] if ch.isdigit())
    assert agent.verify_otp(RECIPIENT, code) == (True, "verified")
    assert code not in report.body


def test_a_whatsapp_otp_goes_through_the_authentication_template(fake: FakeTwilio, make_agent) -> None:  # type: ignore[no-untyped-def]
    twilio = {"WHATSAPP": {"plugin": "twilio-whatsapp", "api_config": api_config(fake, content_sid=OTP_TEMPLATE)}}
    agent = make_agent(twilio=twilio)

    report = dispatch(agent, agent.send_otp(RECIPIENT, channels=["WHATSAPP"]))

    assert report.channel == "WHATSAPP" and report.status is Status.SENT
    request = fake.requests_to(RECIPIENT)[0]
    assert request.field("ContentSid") == OTP_TEMPLATE and request.field("Body") is None
