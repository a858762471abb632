"""Each Twilio channel's happy path: the official SDK over real HTTP to the fake Twilio API."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET

import pytest

from otpagent.model import MessageType, Outcome
from otpagent_twilio.transport import BaseUrlHttpClient
from tests.twilio.conftest import OTP_TEMPLATE, RECIPIENT, SENDER, envelope
from tests.twilio.fake_twilio import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN

SID = re.compile(r"^(SM|CA)[0-9a-f]{32}$")
SERVICE = "MG" + "d4" * 16


def _basic_user(headers: dict[str, str]) -> str:
    return base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode().partition(":")[0]


def test_sms_is_created_with_from_body_and_a_status_callback_carrying_our_id(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", cost=0.0079)

    result = channel.send(envelope(message_id="m-123"))

    assert result.outcome is Outcome.ACCEPTED
    assert SID.match(result.provider_message_id or "") and result.provider_message_id.startswith("SM")
    assert result.cost == pytest.approx(0.0079)
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert _basic_user(request.headers) == ACCOUNT_SID
    assert request.field("To") == RECIPIENT
    assert request.field("From") == SENDER
    assert request.field("Body") == "Your verification code is 482913."
    assert request.field("StatusCallback") == "https://otp.example/callbacks/twilio/SMS?message_id=m-123"
    assert fake.resources[result.provider_message_id]["status"] == "queued"


def test_sms_through_a_messaging_service_is_dropped_by_twilio_once_the_code_expires(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", **{"from": None, "messaging_service_sid": SERVICE})

    result = channel.send(envelope(expires_in=240))

    assert result.ok
    [request] = fake.requests
    assert request.field("MessagingServiceSid") == SERVICE
    assert request.field("From") is None
    assert 230 <= int(request.field("ValidityPeriod") or 0) <= 240


def test_api_key_credentials_authenticate_instead_of_the_auth_token(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", auth_token=None, api_key=API_KEY, api_secret=API_SECRET)

    result = channel.send(envelope())

    assert result.ok
    assert _basic_user(fake.requests[0].headers) == API_KEY
    # Without the auth token, callbacks could not be verified: none is requested.
    assert fake.requests[0].field("StatusCallback") is None


def test_no_status_callback_is_requested_without_a_public_url(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", public_url=None)

    assert channel.send(envelope()).ok
    assert fake.requests[0].field("StatusCallback") is None


def test_callback_base_url_overrides_the_server_public_url(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", callback_base_url="https://edge.example/otp")

    assert channel.send(envelope(message_id="m-9")).ok
    assert fake.requests[0].field("StatusCallback") == "https://edge.example/otp/callbacks/twilio/SMS?message_id=m-9"


def test_whatsapp_otp_uses_the_approved_template_with_the_code_as_variable_1(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("whatsapp", content_sid=OTP_TEMPLATE)

    result = channel.send(envelope())

    assert result.ok and result.provider_message_id.startswith("SM")
    [request] = fake.requests
    assert request.field("To") == f"whatsapp:{RECIPIENT}"
    assert request.field("From") == f"whatsapp:{SENDER}"
    assert request.field("ContentSid") == OTP_TEMPLATE
    assert json.loads(request.field("ContentVariables") or "") == {"1": "482913"}
    assert request.field("Body") is None


def test_whatsapp_template_variables_can_name_the_code_body_and_minutes(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("whatsapp", content_sid=OTP_TEMPLATE,
                           content_variables={"1": "{code}", "2": "{minutes}", "3": "literal {body}"})

    assert channel.send(envelope("the body", expires_in=290)).ok
    assert json.loads(fake.requests[0].field("ContentVariables") or "") == {
        "1": "482913", "2": "5", "3": "literal the body"}


def test_whatsapp_free_form_body_for_other_messages(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("whatsapp", **{"from": f"whatsapp:{SENDER}"})

    result = channel.send(envelope("Your parcel arrives today", code=None, message_type=MessageType.NOTIFICATION))

    assert result.ok
    assert fake.requests[0].field("Body") == "Your parcel arrives today"
    assert fake.requests[0].field("From") == f"whatsapp:{SENDER}"


def test_whatsapp_business_initiated_alerts_can_use_their_own_template(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    alert_template = "HX" + "e5" * 16
    channel = make_channel("whatsapp", templates={"alert": {"content_sid": alert_template}})

    assert channel.send(envelope("Login from a new device", code=None, message_type=MessageType.ALERT)).ok
    assert fake.requests[0].field("ContentSid") == alert_template
    assert json.loads(fake.requests[0].field("ContentVariables") or "") == {"1": "Login from a new device"}


def test_whatsapp_refuses_an_otp_without_a_template_before_calling_twilio(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("whatsapp")

    reason = channel.check(envelope())

    assert reason is not None and "content_sid" in reason
    assert fake.requests == []


def test_voice_call_reads_the_code_digit_by_digit_three_times(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("voice", voice="Polly.Amy", language="en-GB")

    result = channel.send(envelope(message_id="m-7"))

    assert result.ok and result.provider_message_id.startswith("CA")
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert (request.field("To"), request.field("From")) == (RECIPIENT, SENDER)
    assert request.field("StatusCallback") == "https://otp.example/callbacks/twilio/VOICE?message_id=m-7"
    assert request.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    root = ET.fromstring(request.field("Twiml") or "")
    says = root.findall("Say")
    assert len(says) == 3 and len(root.findall("Pause")) == 2
    assert all(s.get("voice") == "Polly.Amy" and s.get("language") == "en-GB" for s in says)
    assert all(s.text and s.text.endswith("4, 8, 2, 9, 1, 3.") for s in says)
    assert "482913" not in (request.field("Twiml") or "")


def test_voice_repeat_and_intro_are_configurable(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("voice", repeat=2, intro="Your Example code is", pause_seconds=2)

    assert channel.send(envelope()).ok
    root = ET.fromstring(fake.requests[0].field("Twiml") or "")
    assert [s.text for s in root.findall("Say")] == [
        "Your Example code is: 4, 8, 2, 9, 1, 3.", "Again, your Example code is: 4, 8, 2, 9, 1, 3."]
    assert root.find("Pause").get("length") == "2"  # type: ignore[union-attr]


def test_voice_alerts_are_read_as_written(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("voice")

    assert channel.send(envelope("Security alert: new login.", code=None, message_type=MessageType.ALERT)).ok
    says = ET.fromstring(fake.requests[0].field("Twiml") or "").findall("Say")
    assert [s.text for s in says] == ["Security alert: new login."] * 2


def test_voice_refuses_scripts_longer_than_twilio_accepts(make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("voice")

    assert channel.check(envelope("x" * 3000, code=None, message_type=MessageType.ALERT)) is not None
    assert channel.check(envelope()) is None


def test_sms_refuses_bodies_over_1600_characters(make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms")

    assert channel.check(envelope("a" * 1601, code=None)) is not None
    assert channel.check(envelope("a" * 1600, code=None)) is None


def test_channels_only_support_recipients_with_a_phone_number(make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms")
    no_phone = envelope().__class__(message_id="m", message_type=MessageType.ALERT, priority=envelope().priority,
                                    body="hi", email="a@example.com")

    assert channel.supports(envelope())
    assert not channel.supports(no_phone)


def test_the_http_client_rewrites_twilio_urls_onto_the_base_url_keeping_a_path_prefix() -> None:
    client = BaseUrlHttpClient("https://proxy.example:8443/twilio", timeout=3)

    target = client.target(f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?x=1")

    assert target == f"https://proxy.example:8443/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?x=1"
    assert client.timeout == 3
    client.close()


def test_the_default_base_url_is_twilios_api_host(make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", base_url=None)

    assert channel.settings.base_url == "https://api.twilio.com"
    assert channel.settings.timeout_seconds == 2
    assert AUTH_TOKEN not in repr(channel.settings.base_url)
