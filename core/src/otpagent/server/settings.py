"""The ``server`` config section, validated once: API keys, public endpoints, abuse limits.

Keys are kept only as SHA-256 digests (a key given as ``"sha256:<hex>"`` is already one), so a
memory dump or an error message never holds a usable API key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from otpagent.errors import ConfigError, collect_config_errors
from otpagent.settings import setting, structure

__all__ = ["LIMIT_NAMES", "Limit", "ServerSection", "ServerSettings", "parse_server_settings"]

_HEX = re.compile(r"^[0-9a-f]{64}$")

#: Abuse limits on the OTP endpoints, each ``{"per_minute": N, "burst": M}`` or null: requests
#: per action and scope, and the budget of *failed* verifications per caller (API key, client
#: address). There is deliberately no verify limit per recipient: anyone could spend it and
#: lock the number's owner out; wrong guesses count against the live code instead.
LIMIT_NAMES = ("otp_send_per_key", "otp_send_per_ip", "otp_send_per_recipient",
               "otp_verify_per_key", "otp_verify_per_ip",
               "otp_verify_failures_per_key", "otp_verify_failures_per_ip")
_DEFAULT_LIMITS: Mapping[str, tuple[float, int]] = {
    "otp_send_per_key": (600.0, 100),
    "otp_send_per_ip": (60.0, 20),
    "otp_send_per_recipient": (6.0, 3),
    "otp_verify_per_key": (1200.0, 200),
    "otp_verify_per_ip": (120.0, 30),
    "otp_verify_failures_per_key": (120.0, 60),
    "otp_verify_failures_per_ip": (30.0, 10),
}
#: Limits that existed once, and why they are gone.
_REMOVED_LIMITS = {
    "otp_verify_per_recipient": "no longer exists: remove it. Anyone could spend a recipient's verify budget and "
                                "lock its owner out; wrong guesses now count against the live code "
                                "(otp.max_attempts) and against the caller (otp_verify_failures_per_key, "
                                "otp_verify_failures_per_ip)",
}


@attrs.frozen
class Limit:
    """A GCRA bucket: ``burst`` requests at once, then one every ``interval`` seconds."""

    interval: float
    burst: int


@attrs.frozen(kw_only=True)
class ServerSettings:
    """What the HTTP service needs to know, parsed from ``config["server"]``."""

    host: str = "127.0.0.1"
    port: int = 8080
    key_digests: tuple[bytes, ...] = ()
    public_metrics: bool = False
    public_health: bool = True
    limits: Mapping[str, Limit | None] = attrs.field(factory=dict)
    max_body_bytes: int = 1024 * 1024
    trusted_proxies: str = "127.0.0.1"
    dashboard_refresh_seconds: float = 1.0
    run_workers: bool = True
    processes: int = 1


@attrs.frozen
class LimitSection:
    """One abuse limit: ``per_minute`` requests, ``burst`` at once."""

    per_minute: float = setting(gt=0, reason="must be a positive number")
    burst: int | None = setting(None, ge=1, reason="must be an integer of at least 1",
                                doc="Requests at once (default: a tenth of a minute's worth)")


_OFF = "{\"per_minute\": N, \"burst\": M}; null turns it off"


@attrs.frozen
class LimitsSection:
    """Abuse limits on the OTP endpoints, each ``{"per_minute": N, "burst": M}`` or null (off).

    The defaults are :data:`_DEFAULT_LIMITS` (a test keeps the two in step).
    """

    otp_send_per_key: LimitSection | None = setting(LimitSection(600.0, 100), doc=_OFF)
    otp_send_per_ip: LimitSection | None = setting(LimitSection(60.0, 20), doc=_OFF)
    otp_send_per_recipient: LimitSection | None = setting(LimitSection(6.0, 3), doc=_OFF)
    otp_verify_per_key: LimitSection | None = setting(LimitSection(1200.0, 200), doc=_OFF)
    otp_verify_per_ip: LimitSection | None = setting(LimitSection(120.0, 30), doc=_OFF)
    otp_verify_failures_per_key: LimitSection | None = setting(LimitSection(120.0, 60), doc=_OFF)
    otp_verify_failures_per_ip: LimitSection | None = setting(LimitSection(30.0, 10), doc=_OFF)


@attrs.frozen
class ServerSection:
    """The HTTP service (``otpagent serve``): address, API keys, public endpoints, abuse limits."""

    host: str = setting("127.0.0.1", min_length=1, reason="must be a host name or address")
    port: int = setting(8080, ge=0, le=65535, reason="must be a port number from 0 to 65535")
    public_url: str | None = setting(None, doc="The URL providers and webhooks reach this service at")
    api_keys: tuple[str, ...] | str = setting(
        (), secret=True, doc="API keys: plain (at least 16 characters), or \"sha256:<hex digest>\"")
    public_metrics: bool = setting(False, doc="Serve /metrics without an API key")
    public_health: bool = setting(True, doc="Serve the health probes without an API key")
    limits: LimitsSection = setting(factory=LimitsSection, doc="Abuse limits by name; null turns one off")
    max_body_bytes: int = setting(1024 * 1024, ge=1024, reason="must be an integer of at least 1024")
    trusted_proxies: tuple[str, ...] | str = setting(
        "127.0.0.1", reason="must be a list of addresses (or a comma-separated string)")
    dashboard_refresh_seconds: float = setting(1.0, ge=0.2, le=60, reason="must be a number from 0.2 to 60")
    processes: int = setting(1, ge=1, le=64, reason="must be an integer from 1 to 64 (processes sharing the port)")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        keys = [self.api_keys] if isinstance(self.api_keys, str) else self.api_keys
        for i, key in enumerate(keys):
            if (problem := _key_problem(key)) is not None:
                yield f"api_keys[{i}]", problem


def parse_server_settings(section: Mapping[str, Any], *, run_workers: bool = True) -> ServerSettings:
    """Validate the ``server`` section; raises :class:`ConfigError` naming every key at fault."""
    errors: list[ConfigError] = []
    limits = section.get("limits")
    if isinstance(limits, Mapping) and (removed := [name for name in limits if name in _REMOVED_LIMITS]):
        errors.extend(ConfigError(f"server.limits.{name}", _REMOVED_LIMITS[name]) for name in removed)
        section = {**section, "limits": {k: v for k, v in limits.items() if k not in _REMOVED_LIMITS}}
    parsed = collect_config_errors(errors, structure, ServerSection, section, path="server")
    if errors or parsed is None:
        raise ConfigError.combine(errors)
    proxies = parsed.trusted_proxies
    return ServerSettings(
        host=parsed.host, port=parsed.port, key_digests=_key_digests(parsed.api_keys),
        public_metrics=parsed.public_metrics, public_health=parsed.public_health, limits=_limits(parsed.limits),
        max_body_bytes=parsed.max_body_bytes,
        trusted_proxies=proxies if isinstance(proxies, str) else ",".join(proxies),
        dashboard_refresh_seconds=parsed.dashboard_refresh_seconds, run_workers=run_workers,
        processes=parsed.processes,
    )


def key_digest(key: str) -> bytes:
    """The SHA-256 digest under which an API key is compared and identified."""
    return hashlib.sha256(key.encode()).digest()


def _key_problem(key: str) -> str | None:
    if not key:
        return "must be a non-empty string"
    if key.startswith("sha256:"):
        if not _HEX.match(key.removeprefix("sha256:").lower()):
            return "a hashed key must be \"sha256:\" followed by 64 hex digits"
        return None
    return "too short: use at least 16 random characters" if len(key) < 16 else None


def _key_digests(raw: tuple[str, ...] | str) -> tuple[bytes, ...]:
    keys = [raw] if isinstance(raw, str) else raw
    return tuple(bytes.fromhex(key.removeprefix("sha256:").lower()) if key.startswith("sha256:") else key_digest(key)
                 for key in keys)


def _limits(raw: LimitsSection) -> dict[str, Limit | None]:
    out: dict[str, Limit | None] = {}
    for name in LIMIT_NAMES:
        value: LimitSection | None = getattr(raw, name)
        out[name] = None if value is None else Limit(
            60.0 / value.per_minute, value.burst if value.burst is not None else max(1, int(value.per_minute) // 6))
    return out
