"""How the sendgrid-email channel classifies SendGrid's answers: transient, or permanent for the
message or for the whole channel."""

from __future__ import annotations

import logging
import socket

import pytest

from otpagent.model import FailureScope, Outcome
from tests.sendgrid.conftest import RECIPIENT, otp_envelope, text_envelope
from tests.sendgrid.fake_sendgrid import BAD_KEY_MESSAGE


def test_429_is_transient_and_retries_after_the_rate_limit_window_resets(fake, make_channel):
    fake.rate_limit(RECIPIENT, reset_in=30)
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.TRANSIENT
    assert result.code == "429"
    assert result.retry_after is not None and 27 <= result.retry_after <= 31


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(fake, make_channel, status):
    fake.fail(RECIPIENT, status)
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.TRANSIENT
    assert result.code == str(status)
    assert result.retry_after is None


def test_400_is_permanent_for_the_message_and_records_sendgrids_errors(fake, make_channel):
    fake.fail(RECIPIENT, 400)
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.PERMANENT
    assert result.scope is FailureScope.MESSAGE
    assert result.code == "400"
    assert result.reason == ("SendGrid HTTP 400: Does not contain a valid address. "
                             "(field: personalizations.0.to.0.email)")


def test_413_is_permanent_for_the_message(fake, make_channel):
    fake.fail(RECIPIENT, 413)
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.MESSAGE, "413")
    assert "content too large" in (result.reason or "")


def test_a_wrong_api_key_is_permanent_for_the_channel(fake, make_channel):
    channel = make_channel(api_config={"api_key": "SG.revoked"})

    result = channel.send(otp_envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "401")
    assert BAD_KEY_MESSAGE in (result.reason or "")
    assert "SG.revoked" not in (result.reason or "")
    assert fake.requests[0].status == 401


def test_403_is_permanent_for_the_channel(fake, make_channel):
    fake.fail(RECIPIENT, 403)
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "403")


def test_a_wrong_base_url_path_is_permanent_for_the_channel(fake, make_channel):
    channel = make_channel(api_config={"base_url": fake.base_url + "/proxy"})

    result = channel.send(otp_envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "404")


def test_a_provider_that_does_not_answer_in_time_is_a_transient_timeout(fake, make_channel):
    fake.stall(RECIPIENT, 5)
    channel = make_channel(api_config={"timeout_seconds": 0.3})

    result = channel.send(otp_envelope())

    # The fake answers after 5 s: a "timeout" result means the 0.3 s client timeout fired first.
    assert result.outcome is Outcome.TRANSIENT
    assert result.code == "timeout"


def test_a_refused_connection_is_transient(make_channel):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = make_channel(api_config={"base_url": f"http://127.0.0.1:{port}"})

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.TRANSIENT
    assert result.code == "connection-error"


def test_an_error_reason_never_contains_the_otp_code(fake, make_channel):
    fake.fail(RECIPIENT, 400, errors=[{"message": "content 913274 rejected", "field": "content", "help": None}])
    channel = make_channel()

    result = channel.send(otp_envelope("913274"))

    assert result.outcome is Outcome.PERMANENT
    assert "913274" not in (result.reason or "")
    assert "******" in (result.reason or "")


def test_the_fake_rejects_a_body_sendgrid_would_reject(fake):
    """The fake is only worth trusting if it says no like SendGrid does."""
    problems = fake.validate({"personalizations": [{"to": [{"email": "a@example.com"}]}],
                              "from": {"email": "no-reply@example.com"}, "custom_args": "not an object",
                              "content": [{"type": "text/html", "value": "x"}, {"type": "text/plain", "value": "y"}]})

    fields = {p["field"] for p in problems}
    assert "custom_args" in fields
    assert fake.validate({"personalizations": [{"to": [{"email": "a@example.com"}]}],
                          "from": {"email": "no-reply@example.com"}})[0]["field"] == "content"


def test_an_otp_whose_code_was_redacted_is_not_sent_as_an_empty_email(fake, make_channel):
    channel = make_channel()

    result = channel.send(otp_envelope(code=None))  # type: ignore[arg-type]

    assert (result.outcome, result.code) == (Outcome.PERMANENT, "no-code")
    assert fake.requests == []


def test_debug_logging_never_shows_the_api_key_or_the_code(fake, make_channel, caplog):
    channel = make_channel()
    caplog.set_level(logging.DEBUG)

    channel.send(otp_envelope("604918"))
    fake.fail(RECIPIENT, 400)
    channel.send(otp_envelope("604918"))

    assert "604918" not in caplog.text
    assert fake.api_key not in caplog.text


def test_content_the_sdk_refuses_is_permanent_for_the_message(fake, make_channel):
    """The SDK refuses a text part that starts like a SendGrid API key."""
    channel = make_channel(templates={"alert": {"text": "$body"}})

    result = channel.send(text_envelope("SG.abcdefgh.ijklmnop is your new key"))

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.MESSAGE, "invalid-content")
    assert "SG.abcdefgh" not in (result.reason or "")
    assert fake.requests == []
