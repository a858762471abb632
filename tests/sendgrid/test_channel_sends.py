"""The sendgrid-email channel talking to the fake SendGrid API through the official SDK: what it sends."""

from __future__ import annotations

import re

from otpagent.model import MessageType, Outcome
from tests.sendgrid.conftest import RECIPIENT, otp_envelope, text_envelope


def _parts(body: dict) -> dict[str, str]:
    return {c["type"]: c["value"] for c in body["content"]}


def test_otp_email_is_accepted_with_sendgrids_message_id(fake, make_channel):
    channel = make_channel()

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.ACCEPTED
    [request] = fake.sent()
    assert result.provider_message_id == request.message_id
    assert result.cost == 0.0006
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {fake.api_key}"


def test_otp_email_text_and_html_both_show_the_code_and_when_it_expires(fake, make_channel):
    channel = make_channel()

    channel.send(otp_envelope("428913", ttl=300))

    body = fake.sent()[0].body
    parts = _parts(body)
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "428913" in parts["text/plain"]
    assert "428913" in parts["text/html"]
    assert "expires in 5 minutes" in parts["text/plain"]
    assert "expires in 5 minutes" in parts["text/html"]
    assert body["subject"] == "Your Acme verification code"
    assert "428913" not in body["subject"]


def test_otp_email_html_is_accessible_and_loads_nothing_from_outside(fake, make_channel):
    channel = make_channel()

    channel.send(otp_envelope("428913"))

    html = _parts(fake.sent()[0].body)["text/html"]
    assert '<html lang="en">' in html
    assert "<title>Your Acme verification code</title>" in html
    assert 'aria-label="4 2 8 9 1 3"' in html
    assert "monospace" in html
    assert "font-size:36px" in html
    assert not re.search(r"<img|src=|url\(|https?://", html)


def test_our_message_id_travels_in_custom_args(fake, make_channel):
    channel = make_channel()

    channel.send(otp_envelope(message_id="msg_abc"))

    assert fake.sent()[0].body["custom_args"] == {"otpagent_message_id": "msg_abc"}


def test_open_click_and_subscription_tracking_are_off_by_default(fake, make_channel):
    channel = make_channel()

    channel.send(otp_envelope())

    tracking = fake.sent()[0].body["tracking_settings"]
    assert tracking["open_tracking"]["enable"] is False
    assert tracking["click_tracking"] == {"enable": False, "enable_text": False}
    assert tracking["subscription_tracking"]["enable"] is False


def test_tracking_can_be_turned_on_for_non_otp_use(fake, make_channel):
    channel = make_channel(tracking={"open": True, "click": True})

    channel.send(text_envelope("Your invoice is ready.", MessageType.NOTIFICATION))

    tracking = fake.sent()[0].body["tracking_settings"]
    assert tracking["open_tracking"]["enable"] is True
    assert tracking["click_tracking"]["enable"] is True


def test_categories_name_the_message_type_by_default_and_follow_config(fake, make_channel):
    default = make_channel()
    configured = make_channel(categories={"alert": ["security", "acme"]})

    default.send(otp_envelope())
    configured.send(text_envelope("Password changed"))

    first, second = fake.sent()
    assert first.body["categories"] == ["otpagent", "otp"]
    assert second.body["categories"] == ["security", "acme"]


def test_from_name_and_reply_to_are_sent(fake, make_channel):
    channel = make_channel(api_config={"reply_to": "help@example.com"})

    channel.send(otp_envelope())

    body = fake.sent()[0].body
    assert body["from"] == {"email": "no-reply@example.com", "name": "Acme"}
    assert body["reply_to"] == {"email": "help@example.com"}
    assert body["personalizations"][0]["to"] == [{"email": RECIPIENT}]


def test_sandbox_mode_is_requested_and_its_200_counts_as_accepted(fake, make_channel):
    channel = make_channel(api_config={"sandbox_mode": True})

    result = channel.send(otp_envelope())

    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id is None
    [request] = fake.sent()
    assert request.status == 200
    assert request.body["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_alert_email_escapes_the_body_in_html_and_keeps_it_verbatim_in_text(fake, make_channel):
    channel = make_channel()

    channel.send(text_envelope("Sign-in from <script>alert(1)</script>\n\nWas it you?"))

    parts = _parts(fake.sent()[0].body)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in parts["text/html"]
    assert "<script>" not in parts["text/html"]
    assert "Sign-in from <script>alert(1)</script>" in parts["text/plain"]
    assert fake.sent()[0].body["subject"] == "Alert from Acme"


def test_request_subject_wins_over_the_template_subject(fake, make_channel):
    channel = make_channel()

    channel.send(text_envelope("Your appointment is tomorrow at 10:00.", MessageType.REMINDER,
                               subject="Appointment tomorrow"))

    body = fake.sent()[0].body
    assert body["subject"] == "Appointment tomorrow"
    assert "<title>Appointment tomorrow</title>" in _parts(body)["text/html"]


def test_configured_templates_replace_the_built_in_ones(fake, make_channel):
    channel = make_channel(templates={"otp": {
        "subject": "$code is your $brand code",
        "text": "Code: $code ($expires_in)",
        "html": "<p>Code: <b>$code</b> for $brand</p>",
    }})

    channel.send(otp_envelope("555123", ttl=600))

    body = fake.sent()[0].body
    assert body["subject"] == "555123 is your Acme code"
    assert _parts(body) == {"text/plain": "Code: 555123 (10 minutes)",
                            "text/html": "<p>Code: <b>555123</b> for Acme</p>"}


def test_dynamic_template_sends_template_id_and_data_instead_of_content(fake, make_channel):
    channel = make_channel(templates={"otp": {"template_id": "d-0123456789abcdef", "template_data": {"app": "Acme"}}})

    channel.send(otp_envelope("777000", message_id="msg_t"))

    body = fake.sent()[0].body
    assert body["template_id"] == "d-0123456789abcdef"
    assert "content" not in body
    data = body["personalizations"][0]["dynamic_template_data"]
    assert data["code"] == "777000"
    assert data["app"] == "Acme"
    assert data["expires_in"] == "5 minutes"
    assert body["custom_args"] == {"otpagent_message_id": "msg_t"}


def test_supports_only_envelopes_with_an_email_address(make_channel):
    channel = make_channel()

    assert channel.supports(otp_envelope())
    assert not channel.supports(otp_envelope(email=None, phone_number="+447700900123"))
    assert channel.kind == "email"


def test_check_rejects_a_malformed_address_before_any_request(fake, make_channel):
    channel = make_channel()

    reason = channel.check(otp_envelope(email="not an address"))

    assert reason is not None and "not a valid email address" in reason
    assert channel.check(otp_envelope()) is None
    assert fake.requests == []
