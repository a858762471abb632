"""Reads and checks a Twilio channel's config section, naming the key path of every mistake.

Everything the channels need is parsed here once, at start-up, into a frozen
:class:`TwilioSettings`, so a typo in ``config.json`` stops the agent with
``config error at channels.SMS.api_config.account_sid: ...`` instead of failing sends later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from otpagent.errors import ConfigError
from otpagent.protocols import Capability, ChannelSpec
from otpagent.settings import setting, structure_channel
from otpagent.storage.capabilities import require

__all__ = ["DEFAULT_BASE_URL", "SECTIONS", "Template", "TwilioSettings", "parse_settings"]

DEFAULT_BASE_URL = "https://api.twilio.com"

_MESSAGE_TYPES = ("otp", "alert", "notification", "reminder")

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
# Alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CONTENT_SID = r"HX[0-9a-fA-F]{32}"
_CONTENT_SID_REASON = "expected a Content SID: HX + 32 hex digits"


@attrs.frozen
class Template:
    """An approved WhatsApp content template and how to fill its variables.

    ``variables`` maps the template's variable names to text in which ``{code}``, ``{body}`` and
    ``{minutes}`` are replaced per message (the default is the code, or the body, as ``"1"``).
    """

    content_sid: str
    variables: Mapping[str, str]


@attrs.frozen(kw_only=True)
class TwilioSettings:
    """One Twilio channel's validated configuration."""

    name: str
    kind: str
    account_sid: str
    auth_token: str | None = attrs.field(repr=False)
    api_key: str | None
    api_secret: str | None = attrs.field(repr=False)
    sender: str | None
    messaging_service_sid: str | None
    base_url: str
    timeout_seconds: float
    callback_base_url: str | None
    status_callback: bool
    callback_wait_seconds: float
    cost: float
    country_costs: Mapping[str, float]
    templates: Mapping[str, Template] = attrs.field(factory=dict)
    voice: str = "alice"
    language: str = "en-US"
    repeat: int = 3
    intro: str = "Your verification code is"
    pause_seconds: int = 1

    @property
    def credentials(self) -> tuple[str, str]:
        """(username, password) for HTTP Basic auth: the API key pair when set, else the token."""
        if self.api_key and self.api_secret:
            return self.api_key, self.api_secret
        assert self.auth_token is not None  # parse_settings guarantees one of the two
        return self.account_sid, self.auth_token


@attrs.frozen
class TwilioApiConfig:
    """``api_config`` keys every Twilio channel takes."""

    # Identifiers are never echoed in errors: a secret pasted in the wrong key must not reach logs.
    account_sid: str = setting(pattern=r"AC[0-9a-fA-F]{32}", pattern_reason="expected an account SID: AC + 32 hex "
                               "digits", echo=False, doc="Expected an account SID: AC + 32 hex digits")
    auth_token: str | None = setting(None, secret=True, min_length=1, doc="The account's auth token (or set "
                                                                          "api_key and api_secret)")
    api_key: str | None = setting(None, pattern=r"SK[0-9a-fA-F]{32}", echo=False,
                                  pattern_reason="expected an API key SID: SK + 32 hex digits")
    api_secret: str | None = setting(None, secret=True, min_length=1)
    sender: str | None = setting(None, key="from", doc="The sender (number, short code, alphanumeric id)")
    base_url: str = setting(DEFAULT_BASE_URL)
    timeout_seconds: float = setting(10.0, ge=0.01, le=120, reason="must be a number between 0.01 and 120")
    callback_base_url: str | None = setting(None, doc="Where Twilio posts status callbacks (default: "
                                                      "server.public_url)")
    status_callback: bool = setting(True, doc="Ask Twilio for delivery status callbacks")
    callback_wait_seconds: float = setting(2.0, ge=0, le=10, reason="must be a number between 0 and 10")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if (self.api_key is None) != (self.api_secret is None):
            yield "api_secret" if self.api_secret is None else "api_key", "api_key and api_secret go together"
        elif self.auth_token is None and self.api_key is None:
            yield "auth_token", "missing: set auth_token (or api_key and api_secret)"
        for key, url in (("base_url", self.base_url), ("callback_base_url", self.callback_base_url)):
            if url is not None and (problem := _url_problem(url)) is not None:
                yield key, problem


@attrs.frozen
class TwilioSmsApiConfig(TwilioApiConfig):
    """``api_config`` of a ``twilio-sms`` channel."""

    messaging_service_sid: str | None = setting(None, pattern=r"MG[0-9a-fA-F]{32}", echo=False,
                                                pattern_reason="expected a Messaging Service SID: MG + 32 hex digits")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        yield from super().settings_problems()
        yield from _sender_problems(self.sender, "sms", self.messaging_service_sid is not None)


@attrs.frozen
class TemplateSection:
    """An approved WhatsApp content template for one message type."""

    content_sid: str = setting(pattern=_CONTENT_SID, pattern_reason=_CONTENT_SID_REASON, echo=False,
                               doc="Expected a Content SID: HX + 32 hex digits")
    content_variables: Mapping[str, str] | None = setting(
        None, min_length=1, doc="Template variable -> text with {code}, {body}, {minutes}")


@attrs.frozen
class TwilioWhatsAppApiConfig(TwilioSmsApiConfig):
    """``api_config`` of a ``twilio-whatsapp`` channel."""

    content_sid: str | None = setting(None, pattern=_CONTENT_SID, pattern_reason=_CONTENT_SID_REASON, echo=False,
                                      doc="The OTP template's Content SID")
    content_variables: Mapping[str, str] | None = setting(
        None, min_length=1, doc="The OTP template's variables (default {\"1\": \"{code}\"})")
    templates: Mapping[str, TemplateSection] = setting(factory=dict, doc="Templates by message type (otp, alert, "
                                                                         "notification, reminder)")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        yield from TwilioApiConfig.settings_problems(self)
        yield from _sender_problems(self.sender, "whatsapp", self.messaging_service_sid is not None)
        if self.content_variables is not None and self.content_sid is None:
            yield "content_variables", "needs content_sid"
        for message_type in self.templates:
            if message_type not in _MESSAGE_TYPES:
                yield f"templates.{message_type}", f"unknown message type (expected one of {', '.join(_MESSAGE_TYPES)})"
            elif message_type == "otp" and self.content_sid is not None:
                yield "templates.otp", "the OTP template is already set by api_config.content_sid"


@attrs.frozen
class TwilioVoiceApiConfig(TwilioApiConfig):
    """``api_config`` of a ``twilio-voice`` channel."""

    voice: str = setting("alice", min_length=1)
    language: str = setting("en-US", min_length=1)
    repeat: int = setting(3, ge=1, le=5, doc="Times the code is read")
    intro: str = setting("Your verification code is", min_length=1)
    pause_seconds: int = setting(1, ge=0, le=5)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        yield from super().settings_problems()
        yield from _sender_problems(self.sender, "voice", False)


@attrs.frozen(kw_only=True)
class _TwilioSection:
    """Keys every Twilio channel section takes beside ``api_config``."""

    country_costs: Mapping[str, float] = setting(factory=dict, doc="Price by ISO country code, e.g. {\"GB\": 0.04}")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        for country, price in self.country_costs.items():
            if not _COUNTRY.match(country):
                yield f"country_costs.{country}", "expected a two-letter ISO 3166 code like GB"
            elif price < 0:
                yield f"country_costs.{country}", f"must be a non-negative number, got {price!r}"


@attrs.frozen(kw_only=True)
class TwilioSmsSection(_TwilioSection):
    """A ``twilio-sms`` channel's own keys."""

    api_config: TwilioSmsApiConfig = setting(doc="Account, credentials and sender")


@attrs.frozen(kw_only=True)
class TwilioWhatsAppSection(_TwilioSection):
    """A ``twilio-whatsapp`` channel's own keys."""

    api_config: TwilioWhatsAppApiConfig = setting(doc="Account, credentials, sender and templates")


@attrs.frozen(kw_only=True)
class TwilioVoiceSection(_TwilioSection):
    """A ``twilio-voice`` channel's own keys."""

    api_config: TwilioVoiceApiConfig = setting(doc="Account, credentials, caller id and what is said")


SECTIONS: Mapping[str, type[TwilioSmsSection | TwilioWhatsAppSection | TwilioVoiceSection]] = {
    "sms": TwilioSmsSection, "whatsapp": TwilioWhatsAppSection, "voice": TwilioVoiceSection,
}


def parse_settings(spec: ChannelSpec, kind: str) -> TwilioSettings:
    """Validate ``spec`` for a Twilio channel of ``kind`` (sms, whatsapp or voice)."""
    path = f"channels.{spec.name}"
    if spec.kind is not None and spec.kind != kind:
        raise ConfigError(f"{path}.kind", f"the {spec.plugin} plugin is a {kind} channel, not {spec.kind}")
    section = structure_channel(SECTIONS[kind], spec)
    api = section.api_config
    public = _clean_url(api.callback_base_url) if api.callback_base_url else (
        spec.context.public_url.rstrip("/") if spec.context.public_url else None)
    if api.callback_base_url and api.status_callback and spec.context.storage is not None:
        # Callbacks are asked for at this URL (``server.public_url`` is checked by the core).
        require(spec.context.storage, Capability.PROVIDER_EVENTS, config_path=f"{path}.api_config.callback_base_url",
                needed_by=f"Twilio status callbacks of channel {spec.name}")
    extra: dict[str, Any] = {}
    if isinstance(api, TwilioWhatsAppApiConfig):
        extra["templates"] = _templates(api)
    elif isinstance(api, TwilioVoiceApiConfig):
        extra.update(voice=api.voice.strip(), language=api.language.strip(), repeat=api.repeat,
                     intro=api.intro.strip(), pause_seconds=api.pause_seconds)
    sender = api.sender.strip().removeprefix("whatsapp:") if api.sender else None
    return TwilioSettings(
        name=spec.name, kind=kind, account_sid=api.account_sid, auth_token=_strip(api.auth_token),
        api_key=api.api_key, api_secret=_strip(api.api_secret), sender=sender,
        messaging_service_sid=getattr(api, "messaging_service_sid", None), base_url=_clean_url(api.base_url),
        timeout_seconds=api.timeout_seconds, callback_base_url=public, status_callback=api.status_callback,
        callback_wait_seconds=api.callback_wait_seconds, cost=spec.cost or 0.0,
        country_costs=dict(section.country_costs), **extra,
    )


def _strip(value: str | None) -> str | None:
    return None if value is None else value.strip()


def _sender_problems(value: str | None, kind: str, has_service: bool) -> Iterator[tuple[str, str]]:
    if value is None:
        if not has_service:
            yield "from", f"missing: set {'from' if kind == 'voice' else 'from (or messaging_service_sid)'}"
        return
    value = value.strip()
    if kind == "whatsapp":
        if not _E164.match(value.removeprefix("whatsapp:")):
            yield "from", f"expected a WhatsApp sender number in E.164, got {value!r}"
    elif not (_E164.match(value) or (kind == "sms" and (_SHORT_CODE.match(value) or _ALPHA_SENDER.match(value)))):
        what = "an E.164 number" if kind == "voice" else "an E.164 number, a short code or an alphanumeric sender id"
        yield "from", f"expected {what}, got {value!r}"


def _url_problem(value: str) -> str | None:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return f"expected an http(s) URL without query, got {value!r}"
    return None


def _clean_url(value: str) -> str:
    return value.strip().rstrip("/")


def _templates(api: TwilioWhatsAppApiConfig) -> dict[str, Template]:
    out: dict[str, Template] = {}
    if api.content_sid is not None:
        out["otp"] = Template(api.content_sid, dict(api.content_variables or {"1": "{code}"}))
    for message_type, entry in api.templates.items():
        default = "{code}" if message_type == "otp" else "{body}"
        out[message_type] = Template(entry.content_sid, dict(entry.content_variables or {"1": default}))
    return out
