"""The emails otpagent writes when no SendGrid dynamic template is configured.

Templates use :class:`string.Template` placeholders (``$code``, ``$brand``...). In the HTML part
every value is escaped with :func:`html.escape` before substitution, so a message body can never
inject markup. The built-in OTP email shows the code large, in a monospace face, states when it
expires, has a plain-text twin, and loads nothing from outside (no images, no tracking pixel):
an OTP email should be readable offline, in any client, and by a screen reader.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping
from datetime import UTC, datetime

import attrs

from otpagent.model import MessageType

__all__ = ["PLACEHOLDERS", "EmailTemplate", "RenderedEmail", "check_template", "describe_expiry"]

#: What a template may use. ``$body_html`` exists only in the HTML part (already escaped).
PLACEHOLDERS = (
    "brand", "code", "code_spaced", "body", "subject", "expires_in", "expires_at", "expiry_sentence",
    "message_type", "message_id",
)


@attrs.frozen(kw_only=True)
class RenderedEmail:
    """An email ready for SendGrid: subject, plain text and HTML."""

    subject: str
    text: str
    html: str


@attrs.frozen(kw_only=True)
class EmailTemplate:
    """Subject, text and HTML templates for one message type."""

    message_type: MessageType
    subject: str
    text: str
    html: str

    @classmethod
    def builtin(cls, message_type: MessageType) -> EmailTemplate:
        """The default email for ``message_type``."""
        return _BUILTIN[message_type]

    def evolve(self, **changes: str) -> EmailTemplate:
        """A copy with some of ``subject``, ``text``, ``html`` replaced."""
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]

    def render(self, values: Mapping[str, str], *, subject: str | None = None) -> RenderedEmail:
        """Fill the templates; ``subject`` (the request's own) wins over the template's."""
        final_subject = subject or string.Template(self.subject).substitute(values)
        values = {**values, "subject": final_subject}
        escaped = {key: html.escape(value) for key, value in values.items()}
        escaped["body_html"] = _paragraphs(values.get("body", ""))
        return RenderedEmail(
            subject=final_subject,
            text=string.Template(self.text).substitute(values),
            html=string.Template(self.html).substitute(escaped),
        )


def check_template(template: EmailTemplate) -> dict[str, str]:
    """Problems with a template, by part (``subject``, ``text``, ``html``): unknown or malformed
    placeholders, and an OTP template that would not show the code."""
    sample = dict.fromkeys(PLACEHOLDERS, "x")
    problems: dict[str, str] = {}
    for part in ("subject", "text", "html"):
        source = getattr(template, part)
        allowed = {**sample, "body_html": "x"} if part == "html" else sample
        try:
            string.Template(source).substitute(allowed)
        except KeyError as exc:
            problems[part] = (f"unknown placeholder ${exc.args[0]} (available: "
                              f"{', '.join('$' + p for p in PLACEHOLDERS)}{', $body_html' if part == 'html' else ''})")
        except ValueError as exc:
            problems[part] = f"malformed placeholder ({exc}); write $$ for a literal dollar sign"
        else:
            needs_code = template.message_type is MessageType.OTP and part != "subject"
            if needs_code and "code" not in string.Template(source).get_identifiers():
                problems[part] = "an OTP template must show the code ($code)"
    return problems


def describe_expiry(expires_at: float | None, now: float) -> tuple[str, str, str]:
    """``("5 minutes", "14:05 UTC", "This code expires in 5 minutes (at 14:05 UTC).")``."""
    if expires_at is None:
        return "", "", ""
    seconds = max(0, round(expires_at - now))
    minutes = round(seconds / 60)
    if seconds < 90:
        span = f"{seconds} seconds"
    elif minutes < 120:
        span = f"{minutes} minutes"
    else:
        span = f"{round(minutes / 60)} hours"
    at = datetime.fromtimestamp(expires_at, UTC).strftime("%H:%M UTC")
    return span, at, f"This code expires in {span} (at {at})."


def _paragraphs(text: str) -> str:
    """Plain text as escaped HTML paragraphs, keeping the author's line breaks."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return "\n".join(
        f'<p style="margin:0 0 16px 0;">{html.escape(b).replace(chr(10), "<br>")}</p>' for b in blocks
    )


# The HTML below follows email-client reality: tables for layout, inline styles, no web fonts,
# no images, system colours with enough contrast (WCAG AA) in light mode, a language and a title.
_SANS = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MONO = "'SFMono-Regular',Menlo,Consolas,'Liberation Mono','Courier New',monospace"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="supported-color-schemes" content="light dark">
<title>$subject</title>
</head>
<body style="margin:0;padding:0;background-color:#f3f4f6;">
<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;" aria-hidden="true">{preheader}</div>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#f3f4f6;">
<tr><td align="center" style="padding:32px 16px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"
 style="max-width:520px;background-color:#ffffff;border-radius:12px;{accent}">
<tr><td style="padding:32px 32px 8px 32px;font-family:{sans};
 color:#4b5563;font-size:14px;font-weight:600;letter-spacing:0.02em;">$brand</td></tr>
<tr><td style="padding:0 32px 32px 32px;font-family:{sans};
 color:#111827;font-size:16px;line-height:1.5;">
<h1 style="margin:0 0 16px 0;font-size:22px;line-height:1.3;color:#111827;">{heading}</h1>
{content}
</td></tr>
</table>
<p style="margin:16px 0 0 0;font-family:{sans};color:#6b7280;font-size:12px;line-height:1.5;">{footer}</p>
</td></tr>
</table>
</body>
</html>
"""

_OTP_CONTENT = """<p style="margin:0 0 16px 0;">Use this code to continue:</p>
<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:0 0 16px 0;">
<tr><td style="background-color:#f3f4f6;border:1px solid #d1d5db;border-radius:8px;padding:16px 24px;">
<span role="text" aria-label="$code_spaced" style="font-family:{mono};
 font-size:36px;line-height:1;font-weight:700;letter-spacing:0.25em;color:#111827;">$code</span>
</td></tr>
</table>
<p style="margin:0 0 16px 0;"><strong>$expiry_sentence</strong></p>
<p style="margin:0;color:#4b5563;font-size:14px;">If you did not ask for this code, you can ignore this email.
Never share it with anyone: $brand will never ask you for it.</p>"""

_OTP_TEXT = """$brand

Your verification code is:

    $code

$expiry_sentence

If you did not ask for this code, you can ignore this email.
Never share it with anyone: $brand will never ask you for it.
"""

_PLAIN_TEXT = """$subject

$body

$brand
"""

_ACCENTS = {
    MessageType.OTP: "",
    MessageType.ALERT: "border-top:6px solid #b91c1c;",
    MessageType.NOTIFICATION: "border-top:6px solid #1d4ed8;",
    MessageType.REMINDER: "border-top:6px solid #b45309;",
}

_SUBJECTS = {
    MessageType.OTP: "Your $brand verification code",
    MessageType.ALERT: "Alert from $brand",
    MessageType.NOTIFICATION: "Notification from $brand",
    MessageType.REMINDER: "Reminder from $brand",
}


def _page(message_type: MessageType) -> str:
    is_otp = message_type is MessageType.OTP
    return _PAGE.format(
        preheader="Your verification code. $expiry_sentence" if is_otp else "$subject",
        accent=_ACCENTS[message_type],
        heading="Your verification code" if is_otp else "$subject",
        content=_OTP_CONTENT.format(mono=_MONO) if is_otp else "$body_html",
        sans=_SANS,
        footer="This email was sent automatically by $brand.",
    )


_BUILTIN = {
    t: EmailTemplate(message_type=t, subject=_SUBJECTS[t], text=_OTP_TEXT if t is MessageType.OTP else _PLAIN_TEXT,
                     html=_page(t))
    for t in MessageType
}
