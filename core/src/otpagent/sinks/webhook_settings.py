"""The ``webhook`` sink's config entry, validated: URL, secret, event filter, retry schedule."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from otpagent.errors import ConfigError
from otpagent.settings import setting, structure
from otpagent.sinks.webhook_target import check_url

__all__ = ["EVENT_TYPES", "WebhookSection", "WebhookSettings", "parse_webhook_settings"]

#: Every event type the core emits; a filter may name them bare or as ``message.x`` / ``otp.x`` /
#: ``fraud.x``.
EVENT_TYPES = ("queued", "scheduled", "attempt", "sent", "retrying", "fallback", "delivered", "read",
               "undelivered", "failed", "cancelled", "expired", "otp_verified", "otp_rejected", "fraud_prefix_held",
               "fraud_prefix_released")
MIN_SECRET_BYTES = 24


@attrs.frozen(kw_only=True)
class WebhookSettings:
    endpoint: str
    url: str
    secret: str = attrs.field(repr=False)
    events: frozenset[str] | None
    allow_private: bool = False
    timeout_seconds: float = 10.0
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 7200.0
    horizon_seconds: float = 86400.0
    poll_interval_seconds: float = 1.0
    retain_days: float = 7.0


@attrs.frozen
class WebhookRetry:
    """When a refused delivery is tried again: exponential from the base delay, for the horizon."""

    base_delay_seconds: float = setting(5.0, ge=0.001, le=3600.0)
    max_delay_seconds: float = setting(7200.0, ge=0.001, le=86400.0)
    horizon_seconds: float = setting(86400.0, ge=0.0, le=30 * 86400.0, doc="Give up after this long")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.max_delay_seconds < self.base_delay_seconds:
            yield "max_delay_seconds", "must be at least retry.base_delay_seconds"


@attrs.frozen
class WebhookSection:
    """A ``{"plugin": "webhook", ...}`` entry of ``sinks``: signed Standard Webhooks to one URL."""

    url: str = setting(min_length=1, doc="The https URL to deliver events to")
    secret: str = setting(secret=True, doc="A Standard Webhooks secret \"whsec_<base64>\" (24 bytes or more)")
    plugin: str = setting("webhook", choices=("webhook",))
    name: str | None = setting(None, min_length=1, doc="The endpoint's name in events and metrics (default: the URL)")
    events: tuple[str, ...] | None = setting(None, min_length=1, doc="Event types to deliver (default: all)")
    allow_private: bool = setting(False, doc="Allow private and loopback addresses (tests only)")
    timeout_seconds: float = setting(10.0, ge=0.1, le=60.0)
    retry: WebhookRetry = setting(factory=WebhookRetry)
    poll_interval_seconds: float = setting(1.0, ge=0.01, le=60.0)
    retain_days: float = setting(7.0, ge=0.0, le=3650.0)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        try:
            check_url(self.url, allow_private=self.allow_private, path="url")
        except ConfigError as exc:
            yield "url", exc.reason
        if (problem := _secret_problem(self.secret)) is not None:
            yield "secret", problem
        if self.name is not None and len(self.name) > 200:
            yield "name", "must be a short string naming the endpoint"
        for event in self.events or ():
            if _event_name(event) not in EVENT_TYPES:
                yield "events", f"unknown event type {event!r} (expected any of {', '.join(EVENT_TYPES)})"


def parse_webhook_settings(section: Mapping[str, Any], path: str = "sinks[].") -> WebhookSettings:
    """Validate one ``{"plugin": "webhook", ...}`` entry; errors name the key (``path`` prefix)."""
    parsed = structure(WebhookSection, section, path=path.removesuffix("."))
    retry = parsed.retry
    return WebhookSettings(
        endpoint=parsed.name or parsed.url, url=parsed.url, secret=parsed.secret,
        events=None if parsed.events is None else frozenset(_event_name(e) for e in parsed.events),
        allow_private=parsed.allow_private, timeout_seconds=parsed.timeout_seconds,
        base_delay_seconds=retry.base_delay_seconds, max_delay_seconds=retry.max_delay_seconds,
        horizon_seconds=retry.horizon_seconds, poll_interval_seconds=parsed.poll_interval_seconds,
        retain_days=parsed.retain_days,
    )


def _event_name(name: str) -> str:
    """``message.delivered`` -> ``delivered``, ``otp.verified`` -> ``otp_verified``,
    ``fraud.prefix_held`` -> ``fraud_prefix_held``."""
    bare = name.removeprefix("message.")
    for family in ("otp", "fraud"):
        if bare.startswith(f"{family}."):
            return f"{family}_" + bare.removeprefix(f"{family}.")
    return bare


def _secret_problem(secret: str) -> str | None:
    if not secret.startswith("whsec_"):
        return "required: a Standard Webhooks secret \"whsec_<base64>\""
    try:
        raw_key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "is not valid base64 after \"whsec_\""
    if len(raw_key) < MIN_SECRET_BYTES:
        # The spec asks for 24 to 64 random bytes: a short key can be guessed offline from one
        # signed delivery. (The length is safe to say; the secret itself is never echoed.)
        return (f"is too short: {len(raw_key)} bytes after base64 decoding; a Standard Webhooks secret needs at "
                f"least {MIN_SECRET_BYTES} random bytes")
    return None
