"""The ``server`` config section, validated once: API keys, public endpoints, abuse limits.

Keys are kept only as SHA-256 digests (a key given as ``"sha256:<hex>"`` is already one), so a
memory dump or an error message never holds a usable API key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import attrs

from otpagent.errors import ConfigError

__all__ = ["LIMIT_NAMES", "Limit", "ServerSettings", "parse_server_settings"]

_KNOWN = ("host", "port", "public_url", "api_keys", "public_metrics", "public_health", "limits",
          "max_body_bytes", "trusted_proxies", "dashboard_refresh_seconds", "processes")
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


def parse_server_settings(section: Mapping[str, Any], *, run_workers: bool = True) -> ServerSettings:
    """Validate the ``server`` section; raises :class:`ConfigError` naming the key at fault."""
    for key in section:
        if key not in _KNOWN:
            raise ConfigError(f"server.{key}", f"unknown key (expected one of {', '.join(_KNOWN)})")
    host = section.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError("server.host", "must be a host name or address")
    port = section.get("port", 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError("server.port", "must be a port number from 0 to 65535")
    max_body = section.get("max_body_bytes", 1024 * 1024)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
        raise ConfigError("server.max_body_bytes", "must be an integer of at least 1024")
    refresh = section.get("dashboard_refresh_seconds", 1.0)
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not 0.2 <= refresh <= 60:
        raise ConfigError("server.dashboard_refresh_seconds", "must be a number from 0.2 to 60")
    processes = section.get("processes", 1)
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= 64:
        raise ConfigError("server.processes", "must be an integer from 1 to 64 (processes sharing the port)")
    proxies = section.get("trusted_proxies", "127.0.0.1")
    if isinstance(proxies, list) and all(isinstance(p, str) for p in proxies):
        proxies = ",".join(proxies)
    if not isinstance(proxies, str):
        raise ConfigError("server.trusted_proxies", "must be a list of addresses (or a comma-separated string)")
    return ServerSettings(
        host=host, port=port, key_digests=_key_digests(section.get("api_keys", [])),
        public_metrics=_flag(section, "public_metrics", False), public_health=_flag(section, "public_health", True),
        limits=_limits(section.get("limits", {})), max_body_bytes=max_body, trusted_proxies=proxies,
        dashboard_refresh_seconds=float(refresh), run_workers=run_workers, processes=processes,
    )


def key_digest(key: str) -> bytes:
    """The SHA-256 digest under which an API key is compared and identified."""
    return hashlib.sha256(key.encode()).digest()


def _key_digests(raw: Any) -> tuple[bytes, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError("server.api_keys", "must be a list of keys (plain, or \"sha256:<hex digest>\")")
    digests = []
    for i, key in enumerate(raw):
        path = f"server.api_keys[{i}]"
        if not isinstance(key, str) or not key:
            raise ConfigError(path, "must be a non-empty string")
        if key.startswith("sha256:"):
            hex_digest = key.removeprefix("sha256:").lower()
            if not _HEX.match(hex_digest):
                raise ConfigError(path, "a hashed key must be \"sha256:\" followed by 64 hex digits")
            digests.append(bytes.fromhex(hex_digest))
        else:
            if len(key) < 16:
                raise ConfigError(path, "too short: use at least 16 random characters")
            digests.append(key_digest(key))
    return tuple(digests)


def _flag(section: Mapping[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"server.{key}", "must be true or false")
    return value


def _limits(raw: Any) -> dict[str, Limit | None]:
    if not isinstance(raw, Mapping):
        raise ConfigError("server.limits", "must be an object")
    out: dict[str, Limit | None] = {name: Limit(60.0 / rate, burst) for name, (rate, burst) in _DEFAULT_LIMITS.items()}
    for name, value in raw.items():
        path = f"server.limits.{name}"
        if name in _REMOVED_LIMITS:
            raise ConfigError(path, _REMOVED_LIMITS[name])
        if name not in LIMIT_NAMES:
            raise ConfigError(path, f"unknown limit (expected one of {', '.join(LIMIT_NAMES)})")
        if value is None:
            out[name] = None
            continue
        if not isinstance(value, Mapping) or set(value) - {"per_minute", "burst"}:
            raise ConfigError(path, "must be {\"per_minute\": N, \"burst\": M} or null to disable")
        rate = value.get("per_minute")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise ConfigError(f"{path}.per_minute", "must be a positive number")
        burst = value.get("burst", max(1, int(rate) // 6))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"{path}.burst", "must be an integer of at least 1")
        out[name] = Limit(60.0 / float(rate), burst)
    return out
