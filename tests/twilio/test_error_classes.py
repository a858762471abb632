"""How each Twilio error is classified: transient (retry), permanent for the message (fall back),
permanent for the channel (open the circuit). Errors come from the fake over real HTTP."""

from __future__ import annotations

import socket
from email.utils import formatdate

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.response import Response

from otpagent.model import FailureScope, Outcome
from otpagent_twilio.classify import classify_error, parse_retry_after
from tests.twilio.conftest import OTP_TEMPLATE, envelope
from tests.twilio.fake_twilio import API_KEY, API_SECRET
from tests.twilio.twilio_api import ERROR_MESSAGES

NUMBER = "+447700900456"


@pytest.mark.parametrize("code", [21211, 21408, 21610, 21614, 21608, 21635, 30006, 21612])
def test_recipient_errors_are_permanent_for_the_message(fake, make_channel, code: int) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, code, message=f"Twilio says {code}")
    channel = make_channel("sms")

    result = channel.send(envelope(phone=NUMBER))

    assert result.outcome is Outcome.PERMANENT
    assert result.scope is FailureScope.MESSAGE
    assert (result.code, result.reason) == (str(code), f"Twilio says {code}")


def test_twilios_magic_invalid_number_gives_21211_with_twilios_message(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    result = make_channel("sms").send(envelope(phone="+15005550001"))

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.MESSAGE, "21211")
    assert result.reason == "The 'To' number +15005550001 is not a valid phone number."


def test_whatsapp_outside_the_session_window_is_permanent_for_the_message(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, 63016)
    channel = make_channel("whatsapp", content_sid=OTP_TEMPLATE)

    result = channel.send(envelope(phone=NUMBER))

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.MESSAGE, "63016")
    assert result.reason == ERROR_MESSAGES[63016]


def test_rate_limit_is_transient_and_honours_retry_after_seconds(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, 20429, retry_after="7")

    result = make_channel("sms").send(envelope(phone=NUMBER))

    assert (result.outcome, result.code, result.retry_after) == (Outcome.TRANSIENT, "20429", 7.0)
    assert result.reason == "Too Many Requests"


def test_rate_limit_retry_after_may_be_an_http_date(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    import time

    fake.fail(NUMBER, 20429, retry_after=formatdate(time.time() + 30, usegmt=True))

    result = make_channel("sms").send(envelope(phone=NUMBER))

    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after is not None and 25 <= result.retry_after <= 31


@pytest.mark.parametrize(("code", "status"), [(20500, 500), (20503, 503), (30003, 400), (30001, 400)])
def test_server_errors_and_unreachable_handsets_are_transient(fake, make_channel, code: int, status: int) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, code, status=status)

    result = make_channel("sms").send(envelope(phone=NUMBER))

    assert (result.outcome, result.code) == (Outcome.TRANSIENT, str(code))


def test_a_wrong_auth_token_is_permanent_for_the_channel(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", auth_token="not-the-token")

    result = channel.send(envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "20003")
    assert result.reason == "Authenticate"
    assert fake.requests[0].answered == 401


def test_an_api_key_of_another_account_gets_20404_on_the_account_for_the_channel(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    other = "AC" + "f0" * 16
    fake.accounts[other] = "other-token"
    channel = make_channel("sms", account_sid=other, auth_token=None, api_key=API_KEY, api_secret=API_SECRET)

    result = channel.send(envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "20404")


def test_a_suspended_account_is_permanent_for_the_channel(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, 20005, status=401, message="Account not active")

    result = make_channel("voice").send(envelope(phone=NUMBER))

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "20005")


def test_a_slow_answer_times_out_as_transient(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    fake.delay(NUMBER, 2.0)
    channel = make_channel("sms", timeout_seconds=0.2)

    result = channel.send(envelope(phone=NUMBER))

    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "timeout")


def test_a_refused_connection_is_transient(make_channel) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = make_channel("sms", base_url=f"http://127.0.0.1:{port}")

    result = channel.send(envelope())

    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "connection")


def test_unknown_client_errors_fail_the_message_and_unknown_server_errors_are_retried(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    fake.fail(NUMBER, 21999, status=400)
    fake.fail("+447700900457", 29999, status=502)
    channel = make_channel("sms")

    client_error = channel.send(envelope(phone=NUMBER))
    server_error = channel.send(envelope(phone="+447700900457"))

    assert (client_error.outcome, client_error.scope) == (Outcome.PERMANENT, FailureScope.MESSAGE)
    assert server_error.outcome is Outcome.TRANSIENT


def test_a_proxy_error_page_without_twilio_json_is_classified_by_http_status() -> None:
    response = Response(502, "<html>Bad Gateway</html>", {"Retry-After": "3"})
    exc = TwilioRestException(502, "/x", "Unable to create record", 502, "POST")

    result = classify_error(exc, response, timeout=10)

    assert (result.outcome, result.code, result.retry_after) == (Outcome.TRANSIENT, "http-502", 3.0)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
