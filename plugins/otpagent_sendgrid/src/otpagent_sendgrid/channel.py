"""The ``sendgrid-email`` channel: one SendGrid account sending email through v3 Mail Send.

``send`` never raises for provider trouble; it classifies every answer into a
:class:`~otpagent.model.SendResult` and leaves the decision (retry, fall back, open the circuit)
to the core:

* 202 (200 in sandbox mode): accepted; ``X-Message-Id`` is the provider id events refer to.
* 429: transient, ``retry_after`` from ``X-RateLimit-Reset`` (epoch seconds).
* 5xx, timeouts, refused connections: transient.
* 400 (bad recipient or content), 413 (too large): permanent for this message.
* 401, 403 (bad or unprivileged key), 404/405 (wrong ``base_url``): permanent for the channel,
  whose circuit then opens.

SendGrid's ``errors`` array (message and field) goes into the result's reason, with the OTP code
masked should SendGrid ever echo content back.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import email_validator
import structlog
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail.exceptions import SendGridException

from otpagent.errors import ConfigError
from otpagent.model import Envelope, FailureScope, MessageType, SendResult
from otpagent.protocols import ChannelSpec
from otpagent_sendgrid.compose import build_mail
from otpagent_sendgrid.settings import SendGridSettings, parse_settings

__all__ = ["SendGridEmailChannel", "classify_http_error", "create_sendgrid_channel"]

log = structlog.get_logger("otpagent_sendgrid")

_MAX_REASON = 500


class _NoWireDebug(logging.Filter):
    """Drops python_http_client's DEBUG records: they print the request headers (our API key)
    and the JSON payload (the OTP code), and an application's DEBUG logging must not leak those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_WIRE_LOGGER = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _NoWireDebug) for f in _WIRE_LOGGER.filters):
    _WIRE_LOGGER.addFilter(_NoWireDebug())


def create_sendgrid_channel(spec: ChannelSpec) -> SendGridEmailChannel:
    """Factory for ``"plugin": "sendgrid-email"`` channel sections."""
    if spec.kind not in (None, "email"):
        raise ConfigError(f"channels.{spec.name}.kind", f"a sendgrid-email channel sends email, not {spec.kind!r}")
    return SendGridEmailChannel(parse_settings(spec))


class SendGridEmailChannel:
    """A :class:`~otpagent.protocols.Channel` of kind ``email`` on the official SendGrid SDK."""

    kind = "email"

    def __init__(self, settings: SendGridSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self.settings = settings
        self._clock = clock
        self._client = SendGridAPIClient(api_key=settings.api_key, host=settings.base_url)
        # SendGridAPIClient takes no timeout, but its python_http_client.Client does and hands it
        # to every request it builds; without one urllib would wait for ever and outlive a lease.
        self._client.client.timeout = settings.timeout_seconds

    @property
    def webhook_public_key(self) -> str | None:
        """The base64 ECDSA key that signs this account's Event Webhook, if configured."""
        return self.settings.webhook_public_key

    def supports(self, envelope: Envelope) -> bool:
        return bool(envelope.email)

    def check(self, envelope: Envelope) -> str | None:
        if not envelope.email:
            return "no email address"
        try:
            email_validator.validate_email(envelope.email, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            return f"not a valid email address: {exc}"
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        return self.settings.cost

    def send(self, envelope: Envelope) -> SendResult:
        bound = log.bind(channel=self.name, message_id=envelope.message_id)
        if envelope.message_type is MessageType.OTP and not envelope.code:
            # The code was redacted (the message was sent or expired): an email without it is useless.
            return SendResult.permanent("the OTP code is no longer available", code="no-code")
        try:
            mail = build_mail(self.settings, envelope, self._clock())
        except (SendGridException, ValueError) as exc:
            # The SDK refuses content that looks like it holds an API key, for instance.
            reason = _mask(f"SendGrid SDK refused the message: {type(exc).__name__}", envelope.code)
            return SendResult.permanent(reason, code="invalid-content", scope=FailureScope.MESSAGE)
        try:
            response = self._client.send(mail)
        except HTTPError as exc:
            result = classify_http_error(exc.status_code, exc.body, exc.headers, now=self._clock())
            bound.info("sendgrid_send_failed", status=exc.status_code, outcome=result.outcome.value)
            return _masked(result, envelope.code)
        except TimeoutError:
            return SendResult.transient(f"no answer from SendGrid within {self.settings.timeout_seconds:g}s",
                                        code="timeout")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return SendResult.transient(f"no answer from SendGrid within {self.settings.timeout_seconds:g}s",
                                            code="timeout")
            return SendResult.transient(f"could not reach SendGrid: {exc.reason}", code="connection-error")
        except (OSError, http.client.HTTPException) as exc:
            return SendResult.transient(f"connection to SendGrid failed: {type(exc).__name__}",
                                        code="connection-error")
        provider_id = _header(response.headers, "X-Message-Id")
        bound.info("sendgrid_send_accepted", status=response.status_code, provider_message_id=provider_id)
        return SendResult.accepted(provider_id, cost=self.settings.cost)

    def close(self) -> None:
        """Nothing to release: python_http_client opens one connection per request."""


def classify_http_error(status: int, body: bytes | str | None, headers: Any, *, now: float) -> SendResult:
    """Map a SendGrid error answer onto a SendResult (see the module docstring)."""
    details = _error_details(body)
    reason = f"SendGrid HTTP {status}" + (f": {details}" if details else "")
    code = str(status)
    if status == 429:
        return SendResult.transient(reason, code=code, retry_after=_retry_after(headers, now))
    if status >= 500 or status == 408:
        return SendResult.transient(reason, code=code)
    if status in (401, 403, 404, 405):
        return SendResult.permanent(reason, code=code, scope=FailureScope.CHANNEL)
    return SendResult.permanent(reason, code=code, scope=FailureScope.MESSAGE)


def _error_details(body: bytes | str | None) -> str:
    """``"message (field: x); message2"`` from SendGrid's ``{"errors": [...]}``."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = data.get("errors") if isinstance(data, Mapping) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors[:5]:
        if not isinstance(item, Mapping):
            continue
        message = str(item.get("message") or "error")
        field = item.get("field")
        parts.append(f"{message} (field: {field})" if field not in (None, "", "null") else message)
    return "; ".join(parts)[:_MAX_REASON]


def _retry_after(headers: Any, now: float) -> float | None:
    """Seconds until SendGrid's rate-limit window resets (``X-RateLimit-Reset`` is epoch seconds)."""
    reset = _header(headers, "X-RateLimit-Reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    retry_after = _header(headers, "Retry-After")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    return None if value in (None, "") else str(value)


def _mask(text: str, code: str | None) -> str:
    return text.replace(code, "******") if code else text


def _masked(result: SendResult, code: str | None) -> SendResult:
    if not code or not result.reason or code not in result.reason:
        return result
    return attrs.evolve(result, reason=_mask(result.reason, code))
