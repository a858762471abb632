"""Turns an :class:`~otpagent.model.Envelope` into a SendGrid v3 Mail Send request.

The request is built with the SDK's ``Mail`` helper so that its shape is exactly what SendGrid's
own library sends. Our message id travels in ``custom_args`` (SendGrid copies custom arguments
onto every Event Webhook event), which is how delivery events find their message again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    CustomArg,
    From,
    Mail,
    MailSettings,
    OpenTracking,
    ReplyTo,
    SandBoxMode,
    SubscriptionTracking,
    To,
    TrackingSettings,
)

from otpagent.model import Envelope
from otpagent_sendgrid.settings import SendGridSettings
from otpagent_sendgrid.templates import RenderedEmail, describe_expiry

__all__ = ["MESSAGE_ID_ARG", "build_mail", "render_email", "template_values"]

#: The custom argument that carries our message id; it comes back on every event.
MESSAGE_ID_ARG = "otpagent_message_id"


def brand_of(settings: SendGridSettings) -> str:
    """The name the email speaks as: ``from_name``, else the sender's domain."""
    return settings.from_name or settings.from_email.rpartition("@")[2]


def template_values(settings: SendGridSettings, envelope: Envelope, now: float) -> dict[str, str]:
    """The placeholder values for one envelope (see templates.PLACEHOLDERS)."""
    expires_in, expires_at, sentence = describe_expiry(envelope.expires_at, now)
    code = envelope.code or ""
    return {
        "brand": brand_of(settings),
        "code": code,
        "code_spaced": " ".join(code),
        "body": envelope.body,
        "subject": envelope.subject or "",
        "expires_in": expires_in,
        "expires_at": expires_at,
        "expiry_sentence": sentence,
        "message_type": envelope.message_type.value,
        "message_id": envelope.message_id,
    }


def render_email(settings: SendGridSettings, envelope: Envelope, now: float) -> RenderedEmail:
    """The subject, text and HTML otpagent writes itself (no dynamic template)."""
    template = settings.types[envelope.message_type].template
    return template.render(template_values(settings, envelope, now), subject=envelope.subject)


def build_mail(settings: SendGridSettings, envelope: Envelope, now: float) -> Mail:
    """The Mail Send request for ``envelope``. Raises SendGridException/ValueError on bad content."""
    if not envelope.email:
        raise ValueError("the envelope has no email address")
    per_type = settings.types[envelope.message_type]
    sender = From(settings.from_email, settings.from_name)
    if per_type.template_id:
        mail = Mail(from_email=sender, to_emails=To(envelope.email))
        mail.template_id = per_type.template_id
        mail.dynamic_template_data = _dynamic_data(per_type.template_data, settings, envelope, now)
    else:
        email = render_email(settings, envelope, now)
        mail = Mail(from_email=sender, to_emails=To(envelope.email), subject=email.subject,
                    plain_text_content=email.text, html_content=email.html)
    if settings.reply_to:
        mail.reply_to = ReplyTo(settings.reply_to)
    mail.custom_arg = CustomArg(MESSAGE_ID_ARG, envelope.message_id)
    # The SDK inserts each category at the front; add them reversed to keep the configured order.
    mail.category = [Category(c) for c in reversed(per_type.categories)]
    mail.tracking_settings = _tracking(settings.tracking)
    if settings.sandbox_mode:
        mail_settings = MailSettings()
        mail_settings.sandbox_mode = SandBoxMode(True)
        mail.mail_settings = mail_settings
    return mail


def _dynamic_data(static: Mapping[str, Any], settings: SendGridSettings, envelope: Envelope,
                  now: float) -> dict[str, Any]:
    """Data for a SendGrid dynamic template: configured values, then ours, then the request's."""
    data: dict[str, Any] = dict(static)
    values = template_values(settings, envelope, now)
    values.pop("code_spaced")
    data.update(values)
    extra = envelope.metadata.get("template_data")
    if isinstance(extra, Mapping):
        data.update(extra)
    return data


def _tracking(tracking: Mapping[str, bool]) -> TrackingSettings:
    """Explicit tracking settings, so an account-wide default cannot add a pixel to an OTP."""
    settings = TrackingSettings()
    settings.click_tracking = ClickTracking(tracking["click"], tracking["click"])
    settings.open_tracking = OpenTracking(tracking["open"])
    settings.subscription_tracking = SubscriptionTracking(tracking["subscription"])
    return settings
