"""Reads and checks an ``http-sms`` channel's config section, naming the key of every mistake.

Everything is parsed once, when the agent is built, into a frozen :class:`HttpSmsSettings`, so a
typo in ``config.json`` stops start-up (and ``otpagent config check``) with
``config error at channels.SMS.api_config.timeout_seconds: ...`` instead of failing sends later.
The token is a secret: it is kept out of the settings' repr, and no error ever echoes it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from otpagent.config import COMMON_CHANNEL_KEYS
from otpagent.errors import ConfigError
from otpagent.protocols import ChannelSpec

__all__ = ["API_KEYS", "DEFAULT_MAX_LENGTH", "DEFAULT_TIMEOUT_SECONDS", "HttpSmsSettings", "parse_settings"]

#: The keys of ``api_config`` this plugin reads; anything else is a mistake worth naming.
API_KEYS = frozenset({"base_url", "token", "from", "timeout_seconds", "max_length"})
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Characters per request most gateways accept (ten concatenated parts, give or take).
DEFAULT_MAX_LENGTH = 1600

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
# Alphanumeric sender ids: up to 11 letters, digits and spaces, at least one letter.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
# What may appear in an HTTP header value after "Bearer ": visible ASCII, no spaces.
_TOKEN = re.compile(r"^[\x21-\x7e]+$")


@attrs.frozen(kw_only=True)
class HttpSmsSettings:
    """One channel's validated configuration."""

    name: str
    base_url: str
    token: str = attrs.field(repr=False)  # a secret: never in a repr
    sender: str
    timeout_seconds: float
    max_length: int
    cost: float


def parse_settings(spec: ChannelSpec) -> HttpSmsSettings:
    """Validate ``spec`` (the ``channels.<NAME>`` section) for an ``http-sms`` channel."""
    path = f"channels.{spec.name}"
    for key in spec.settings:
        if key not in COMMON_CHANNEL_KEYS:
            raise ConfigError(f"{path}.{key}", f"unknown key for an http-sms channel "
                                               f"(expected one of {', '.join(sorted(COMMON_CHANNEL_KEYS))})")
    if spec.kind not in (None, "sms"):
        raise ConfigError(f"{path}.kind", f"an http-sms channel sends SMS, not {spec.kind!r}")
    if not isinstance(spec.settings.get("api_config"), Mapping):
        raise ConfigError(f"{path}.api_config", "missing: set base_url, token and from")
    api = spec.api_config
    api_path = f"{path}.api_config"
    for key in api:
        if key not in API_KEYS:
            raise ConfigError(f"{api_path}.{key}", f"unknown key for an http-sms channel "
                                                   f"(expected one of {', '.join(sorted(API_KEYS))})")
    return HttpSmsSettings(
        name=spec.name,
        base_url=_base_url(api.get("base_url"), f"{api_path}.base_url"),
        token=_token(api.get("token"), f"{api_path}.token"),
        sender=_sender(api.get("from"), f"{api_path}.from"),
        timeout_seconds=_timeout(api.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), f"{api_path}.timeout_seconds"),
        max_length=_max_length(api.get("max_length", DEFAULT_MAX_LENGTH), f"{api_path}.max_length"),
        cost=spec.cost or 0.0,
    )


def _base_url(value: Any, path: str) -> str:
    if value is None:
        raise ConfigError(path, "missing: the gateway's URL, e.g. https://sms.example.net")
    if not isinstance(value, str):
        raise ConfigError(path, "must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(path, f"expected an http(s) URL without query or fragment, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The bearer token travels in every request: over plain HTTP anyone on the path reads it.
        raise ConfigError(path, f"must be https (plain http is allowed for loopback only), got {value!r}")
    return value.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(value: Any, path: str) -> str:
    # Never echo the value: a token in an error message ends up in logs and tickets.
    if value is None:
        raise ConfigError(path, "missing: the gateway's API token (write \"${SMS_GATEWAY_TOKEN}\" to read it "
                                "from the environment)")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "must be a non-empty string")
    if not _TOKEN.match(value.strip()):
        raise ConfigError(path, "must be printable ASCII without spaces (it is sent as an HTTP header)")
    return value.strip()


def _sender(value: Any, path: str) -> str:
    if value is None:
        raise ConfigError(path, "missing: the sender, an E.164 number, a short code or an alphanumeric id")
    if isinstance(value, str) and (_E164.match(value) or _SHORT_CODE.match(value) or _ALPHA_SENDER.match(value)):
        return value
    raise ConfigError(path, f"expected an E.164 number, a short code or an alphanumeric sender id "
                            f"(up to 11 letters and digits), got {value!r}")


def _timeout(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(path, f"must be a number of seconds, got {value!r}")
    if not 0.01 <= value <= 60:
        raise ConfigError(path, f"must be between 0.01 and 60 seconds, got {value!r}")
    return float(value)


def _max_length(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise ConfigError(path, f"must be a whole number of characters from 1 to 100000, got {value!r}")
    return value
