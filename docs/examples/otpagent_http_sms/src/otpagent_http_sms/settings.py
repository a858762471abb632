"""Reads and checks an ``http-sms`` channel's config section, naming the key of every mistake.

Everything is parsed once, when the agent is built, into a frozen :class:`HttpSmsSettings`, so a
typo in ``config.json`` stops start-up (and ``otpagent config check``) with
``config error at channels.SMS.api_config.timeout_seconds: ...`` instead of failing sends later.
The token is a secret: it is kept out of the settings' repr, and no error ever echoes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

import attrs

from otpagent.errors import ConfigError
from otpagent.protocols import ChannelSpec
from otpagent.settings import setting, structure_channel

__all__ = ["DEFAULT_MAX_LENGTH", "DEFAULT_TIMEOUT_SECONDS", "HttpSmsApiConfig", "HttpSmsSection", "HttpSmsSettings",
           "parse_settings"]

DEFAULT_TIMEOUT_SECONDS = 10.0
#: Characters per request most gateways accept (ten concatenated parts, give or take).
DEFAULT_MAX_LENGTH = 1600

#: A sender: an E.164 number, a short code, or an alphanumeric id (up to 11 letters, digits and
#: spaces, at least one letter).
_SENDER = r"\+[1-9][0-9]{6,14}|[0-9]{3,8}|(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}"


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


@attrs.frozen
class HttpSmsApiConfig:
    """``api_config`` of an ``http-sms`` channel: where the gateway is, and who we are to it."""

    base_url: str = setting(doc="The gateway's URL, e.g. https://sms.example.net")
    token: str = setting(secret=True, pattern=r"[\x21-\x7e]+", reason="must be a non-empty string",
                         pattern_reason="must be printable ASCII without spaces (it is sent as an HTTP header)",
                         doc="The gateway's API token (write \"${SMS_GATEWAY_TOKEN}\" to read it from the "
                             "environment)")
    sender: str = setting(key="from", pattern=_SENDER,
                          pattern_reason="expected an E.164 number, a short code or an alphanumeric sender id "
                                         "(up to 11 letters and digits)",
                          doc="The sender, an E.164 number, a short code or an alphanumeric id")
    timeout_seconds: float = setting(DEFAULT_TIMEOUT_SECONDS, ge=0.01, le=60,
                                     reason="must be a number of seconds between 0.01 and 60")
    max_length: int = setting(DEFAULT_MAX_LENGTH, ge=1, le=100_000,
                              doc="Characters the gateway takes in one request")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if (problem := _base_url_problem(self.base_url)) is not None:
            yield "base_url", problem


@attrs.frozen
class HttpSmsSection:
    """An ``http-sms`` channel's own keys: only ``api_config`` (beside the keys every channel takes)."""

    api_config: HttpSmsApiConfig = setting(doc="Set base_url, token and from")


def parse_settings(spec: ChannelSpec) -> HttpSmsSettings:
    """Validate ``spec`` (the ``channels.<NAME>`` section) for an ``http-sms`` channel."""
    if spec.kind not in (None, "sms"):
        raise ConfigError(f"channels.{spec.name}.kind", f"an http-sms channel sends SMS, not {spec.kind!r}")
    # Every mistake in the section is named at once, by its key path; the token is never echoed.
    api = structure_channel(HttpSmsSection, spec).api_config
    return HttpSmsSettings(name=spec.name, base_url=api.base_url.strip().rstrip("/"), token=api.token,
                           sender=api.sender, timeout_seconds=api.timeout_seconds, max_length=api.max_length,
                           cost=spec.cost or 0.0)


def _base_url_problem(value: str) -> str | None:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return f"expected an http(s) URL without query or fragment, got {value!r}"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The bearer token travels in every request: over plain HTTP anyone on the path reads it.
        return f"must be https (plain http is allowed for loopback only), got {value!r}"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
