"""Reads and checks a Twilio channel's config section, naming the key path of every mistake.

Everything the channels need is parsed here once, at start-up, into a frozen
:class:`TwilioSettings`, so a typo in ``config.json`` stops the agent with
``config error at channels.SMS.api_config.account_sid: ...`` instead of failing sends later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from otpagent.config import COMMON_CHANNEL_KEYS
from otpagent.errors import ConfigError
from otpagent.protocols import Capability, ChannelSpec
from otpagent.storage.capabilities import require

__all__ = ["DEFAULT_BASE_URL", "Template", "TwilioSettings", "parse_settings"]

DEFAULT_BASE_URL = "https://api.twilio.com"

#: Keys of a channel section that the core itself reads (see otpagent.config).
_SECTION_KEYS = COMMON_CHANNEL_KEYS | {"country_costs"}
_COMMON_KEYS = frozenset({"account_sid", "auth_token", "api_key", "api_secret", "from", "base_url",
                          "timeout_seconds", "callback_base_url", "status_callback", "callback_wait_seconds"})
_KIND_KEYS = {
    "sms": frozenset({"messaging_service_sid"}),
    "whatsapp": frozenset({"messaging_service_sid", "content_sid", "content_variables", "templates"}),
    "voice": frozenset({"voice", "language", "repeat", "intro", "pause_seconds"}),
}
_MESSAGE_TYPES = ("otp", "alert", "notification", "reminder")

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY = re.compile(r"^SK[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
# Alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


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


def parse_settings(spec: ChannelSpec, kind: str) -> TwilioSettings:
    """Validate ``spec`` for a Twilio channel of ``kind`` (sms, whatsapp or voice)."""
    path = f"channels.{spec.name}"
    for key in spec.settings:
        if key not in _SECTION_KEYS:
            raise ConfigError(f"{path}.{key}", f"unknown key for a Twilio channel "
                                               f"(expected one of {', '.join(sorted(_SECTION_KEYS))})")
    if spec.kind is not None and spec.kind != kind:
        raise ConfigError(f"{path}.kind", f"the {spec.plugin} plugin is a {kind} channel, not {spec.kind}")
    api = spec.api_config
    api_path = f"{path}.api_config"
    allowed = _COMMON_KEYS | _KIND_KEYS[kind]
    for key in api:
        if key not in allowed:
            raise ConfigError(f"{api_path}.{key}", f"unknown key for a {kind} channel "
                                                   f"(expected one of {', '.join(sorted(allowed))})")

    account_sid = _matching(api, "account_sid", _ACCOUNT_SID, api_path, "an account SID: AC + 32 hex digits",
                            required=True)
    assert account_sid is not None
    auth_token = _text(api, "auth_token", api_path)
    api_key = _matching(api, "api_key", _API_KEY, api_path, "an API key SID: SK + 32 hex digits")
    api_secret = _text(api, "api_secret", api_path)
    if (api_key is None) != (api_secret is None):
        missing = "api_secret" if api_secret is None else "api_key"
        raise ConfigError(f"{api_path}.{missing}", "api_key and api_secret go together")
    if auth_token is None and api_key is None:
        raise ConfigError(f"{api_path}.auth_token", "missing: set auth_token (or api_key and api_secret)")

    sender = _sender(api, kind, api_path)
    service = None
    if kind != "voice":
        service = _matching(api, "messaging_service_sid", _SERVICE_SID, api_path,
                            "a Messaging Service SID: MG + 32 hex digits")
    if sender is None and service is None:
        need = "from" if kind == "voice" else "from (or messaging_service_sid)"
        raise ConfigError(f"{api_path}.from", f"missing: set {need}")

    base_url = _url(api.get("base_url", DEFAULT_BASE_URL), f"{api_path}.base_url")
    callback_base = api.get("callback_base_url")
    callback_base = None if callback_base is None else _url(callback_base, f"{api_path}.callback_base_url")
    public = callback_base or (spec.context.public_url.rstrip("/") if spec.context.public_url else None)
    status_callback = api.get("status_callback", True)
    if not isinstance(status_callback, bool):
        raise ConfigError(f"{api_path}.status_callback", "must be true or false")
    if callback_base and status_callback and spec.context.storage is not None:
        # Callbacks are asked for at this URL (``server.public_url`` is checked by the core).
        require(spec.context.storage, Capability.PROVIDER_EVENTS, config_path=f"{api_path}.callback_base_url",
                needed_by=f"Twilio status callbacks of channel {spec.name}")

    extra: dict[str, Any] = {}
    if kind == "whatsapp":
        extra["templates"] = _templates(api, api_path)
    elif kind == "voice":
        extra.update(_voice(api, api_path))

    return TwilioSettings(
        name=spec.name, kind=kind, account_sid=account_sid, auth_token=auth_token, api_key=api_key,
        api_secret=api_secret, sender=sender, messaging_service_sid=service, base_url=base_url,
        timeout_seconds=_number(api.get("timeout_seconds", 10), f"{api_path}.timeout_seconds", low=0.01, high=120),
        callback_base_url=public, status_callback=status_callback,
        callback_wait_seconds=_number(api.get("callback_wait_seconds", 2), f"{api_path}.callback_wait_seconds",
                                      low=0, high=10),
        cost=spec.cost or 0.0, country_costs=_country_costs(spec.settings.get("country_costs"), path), **extra,
    )


def _text(api: Mapping[str, Any], key: str, path: str) -> str | None:
    value = api.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}.{key}", "must be a non-empty string")
    return value.strip()


def _matching(api: Mapping[str, Any], key: str, pattern: re.Pattern[str], path: str, what: str,
              *, required: bool = False) -> str | None:
    value = _text(api, key, path)
    if value is None:
        if required:
            raise ConfigError(f"{path}.{key}", f"missing: expected {what}")
        return None
    if not pattern.match(value):
        # Never echo the value: a misplaced secret must not end up in logs.
        raise ConfigError(f"{path}.{key}", f"expected {what}")
    return value


def _sender(api: Mapping[str, Any], kind: str, path: str) -> str | None:
    value = _text(api, "from", path)
    if value is None:
        return None
    if kind == "whatsapp":
        number = value.removeprefix("whatsapp:")
        if not _E164.match(number):
            raise ConfigError(f"{path}.from", f"expected a WhatsApp sender number in E.164, got {value!r}")
        return number
    if _E164.match(value) or (kind == "sms" and (_SHORT_CODE.match(value) or _ALPHA_SENDER.match(value))):
        return value
    what = "an E.164 number" if kind == "voice" else "an E.164 number, a short code or an alphanumeric sender id"
    raise ConfigError(f"{path}.from", f"expected {what}, got {value!r}")


def _url(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(path, f"expected an http(s) URL without query, got {value!r}")
    return value.strip().rstrip("/")


def _number(value: Any, path: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(path, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _country_costs(value: Any, path: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}.country_costs", "must map ISO country codes to prices, e.g. {\"GB\": 0.04}")
    out = {}
    for country, price in value.items():
        if not isinstance(country, str) or not _COUNTRY.match(country):
            raise ConfigError(f"{path}.country_costs.{country}", "expected a two-letter ISO 3166 code like GB")
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise ConfigError(f"{path}.country_costs.{country}", f"must be a non-negative number, got {price!r}")
        out[country] = float(price)
    return out


def _variables(value: Any, path: str, default: str) -> dict[str, str]:
    if value is None:
        return {"1": default}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(path, "must map template variable names to text, e.g. {\"1\": \"{code}\"}")
    for key, text in value.items():
        if not isinstance(text, str):
            raise ConfigError(f"{path}.{key}", "must be a string (it may use {code}, {body} and {minutes})")
    return {str(k): v for k, v in value.items()}


def _templates(api: Mapping[str, Any], path: str) -> dict[str, Template]:
    out: dict[str, Template] = {}
    content_sid = _matching(api, "content_sid", _CONTENT_SID, path, "a Content SID: HX + 32 hex digits")
    if content_sid is not None:
        out["otp"] = Template(content_sid, _variables(api.get("content_variables"), f"{path}.content_variables",
                                                      "{code}"))
    elif api.get("content_variables") is not None:
        raise ConfigError(f"{path}.content_variables", "needs content_sid")
    raw = api.get("templates")
    if raw is None:
        return out
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}.templates", "must map message types to {\"content_sid\": ..., "
                                               "\"content_variables\": {...}}")
    for message_type, entry in raw.items():
        where = f"{path}.templates.{message_type}"
        if message_type not in _MESSAGE_TYPES:
            raise ConfigError(where, f"unknown message type (expected one of {', '.join(_MESSAGE_TYPES)})")
        if not isinstance(entry, Mapping):
            raise ConfigError(where, "must be an object with content_sid")
        for key in entry:
            if key not in ("content_sid", "content_variables"):
                raise ConfigError(f"{where}.{key}", "unknown key (expected content_sid, content_variables)")
        if message_type == "otp" and content_sid is not None:
            raise ConfigError(where, "the OTP template is already set by api_config.content_sid")
        sid = _matching(entry, "content_sid", _CONTENT_SID, where, "a Content SID: HX + 32 hex digits",
                        required=True)
        assert sid is not None
        default = "{code}" if message_type == "otp" else "{body}"
        out[message_type] = Template(sid, _variables(entry.get("content_variables"),
                                                     f"{where}.content_variables", default))
    return out


def _voice(api: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("voice", "language", "intro"):
        value = _text(api, key, path)
        if value is not None:
            out[key] = value
    for key, low, high in (("repeat", 1, 5), ("pause_seconds", 0, 5)):
        value = api.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{path}.{key}", f"must be an integer from {low} to {high}, got {value!r}")
        out[key] = value
    return out
