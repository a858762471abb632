"""Load and validate ``config.json``: ``${ENV}`` interpolation, defaults, errors naming the key path.

The original product's shape stays valid: a channel section without ``"plugin"`` takes the
default for its name (SMS -> twilio-sms, WHATSAPP -> twilio-whatsapp, CALL/VOICE -> twilio-voice,
EMAIL -> sendgrid-email). With no ``channels`` at all, the embedded default is one console
channel of each kind, so ``IntelligentOTPAgent()`` works out of the box.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from otpagent.circuit import BreakerSettings
from otpagent.errors import ConfigError
from otpagent.fraud.settings import FraudGuardSettings, parse_fraud_guard
from otpagent.logs import get_logger
from otpagent.model import ChannelKind
from otpagent.redact import MASK, redacted_repr
from otpagent.tracing import parse_tracing

__all__ = [
    "COMMON_CHANNEL_KEYS",
    "AgentConfig",
    "ChannelConfig",
    "DispatcherConfig",
    "OtpConfig",
    "RetryConfig",
    "load_config",
    "locate_config",
    "parse_config",
]

DEFAULT_CHANNEL_PLUGINS = {
    "SMS": "twilio-sms",
    "WHATSAPP": "twilio-whatsapp",
    "CALL": "twilio-voice",
    "VOICE": "twilio-voice",
    "EMAIL": "sendgrid-email",
}

#: Keys of a channel section that the core itself reads; channel plugins accept these beside
#: their own (and should reject anything else, naming the key).
COMMON_CHANNEL_KEYS = frozenset({
    "plugin", "kind", "enabled", "cost", "cost_per_message", "weight", "rate_limit", "daily_budget", "api_config",
})

log = get_logger("otpagent.config")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@attrs.frozen
class RateLimitConfig:
    per_second: float
    burst: int


@attrs.frozen
class ChannelConfig:
    name: str
    plugin: str
    kind: str | None
    enabled: bool
    cost: float | None
    weight: float
    rate_limit: RateLimitConfig | None
    settings: Mapping[str, Any] = attrs.field(repr=redacted_repr)
    daily_budget: float | None = None


@attrs.frozen
class RetryConfig:
    max_attempts: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0


@attrs.frozen
class OtpConfig:
    #: False runs the agent without OTPs (``send_otp``/``verify_otp`` refuse), so a storage
    #: backend without the OTP store capability will do.
    enabled: bool = True
    length: int = 6
    ttl_seconds: float = 300.0
    #: Wrong guesses a live code survives; the one that reaches it kills the code.
    max_attempts: int = 5
    resend_cooldown_seconds: float = 30.0
    max_per_hour: int = 5
    allowed_countries: tuple[str, ...] = ()
    per_country_per_minute: int | None = None
    global_per_minute: int | None = None
    #: Wrong guesses against live codes per minute, across the fleet, before every verify is
    #: refused (``RateLimited``) until the rate falls; null turns the guard off.
    global_failures_per_minute: int | None = attrs.field(default=600, metadata={"nullable": True})
    voice_enabled: bool = False
    message: str = "Your verification code is {code}. It expires in {minutes} minutes. Never share it."
    #: Per-locale bodies (BCP 47 tag -> template); ``send_otp(locale=...)`` picks the exact tag,
    #: then its language ("pt-BR" -> "pt"), then ``message``.
    messages: Mapping[str, str] = attrs.field(factory=dict)
    secret: str | None = attrs.field(default=None, repr=lambda v: "None" if v is None else repr(MASK))
    #: Where the master OTP secret is kept when neither ``secret`` nor ``$OTPAGENT_OTP_SECRET``
    #: is set: ``otpagent.key`` beside the config file by default (see :mod:`otpagent.otp_keys`).
    key_file: str | None = None
    #: The SMS-pumping guard (``otp.fraud_guard``, docs/fraud.md); on by default.
    fraud_guard: FraudGuardSettings = attrs.field(factory=FraudGuardSettings)

    def template_for(self, locale: str | None) -> str:
        if locale:
            by_tag = {k.lower(): v for k, v in self.messages.items()}
            tag = locale.lower()
            for candidate in (tag, tag.split("-")[0]):
                if candidate in by_tag:
                    return by_tag[candidate]
        return self.message


#: The shortest lease a worker may take. A renewal is a database write that can wait behind
#: other writers, a slow fsync or a busy CPU; below a second, an ordinary pause on a loaded
#: machine lets a live worker's lease lapse, and its messages would be sent twice.
MIN_LEASE_SECONDS = 1.0


@attrs.frozen
class DispatcherConfig:
    """How this process works the queue.

    A claimed message is leased for ``lease_seconds`` and the lease is renewed every
    ``heartbeat_interval`` while this process lives, so a killed worker's messages are taken
    over within one lease, and a live one never loses a lease, however long a provider call
    takes. A provider call is abandoned after ``channel_timeout_seconds`` plus
    ``channel_timeout_grace_seconds`` (the channel's own timeout should fire first).
    """

    workers: int = 16
    lease_seconds: float = 6.0
    #: Seconds between lease renewals; None: a quarter of the lease.
    heartbeat_seconds: float | None = None
    poll_interval_seconds: float = 0.2
    channel_timeout_seconds: float = 15.0
    channel_timeout_grace_seconds: float = 5.0

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 4.0 if self.heartbeat_seconds is None else self.heartbeat_seconds


@attrs.frozen
class CleanupConfig:
    retain_days: float = 30.0
    interval_seconds: float = 3600.0


@attrs.frozen
class AgentConfig:
    storage: Mapping[str, Any] = attrs.field(repr=redacted_repr)
    routing: Mapping[str, Any]
    channels: tuple[ChannelConfig, ...]
    otp: OtpConfig
    retry: RetryConfig
    dispatcher: DispatcherConfig
    cleanup: CleanupConfig
    circuit: BreakerSettings
    sinks: tuple[Mapping[str, Any], ...] = attrs.field(repr=redacted_repr)
    server: Mapping[str, Any] = attrs.field(repr=redacted_repr)
    base_dir: Path
    raw: Mapping[str, Any] = attrs.field(repr=False)  # as written: every secret in clear

    @property
    def storage_backend(self) -> str:
        return str(self.storage.get("backend", "sqlite"))

    @property
    def public_url(self) -> str | None:
        url = self.server.get("public_url")
        return str(url).rstrip("/") if url else None


def locate_config(path: str | os.PathLike[str] | None = None, *,
                  environ: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
    """Which config file to use, and why: ``path`` when given, else ``$OTPAGENT_CONFIG``, else
    ``./config.json`` when it exists, else None (the embedded default: SQLite + console)."""
    env = os.environ if environ is None else environ
    if path is not None:
        return Path(path), "argument"
    if env.get("OTPAGENT_CONFIG"):
        return Path(env["OTPAGENT_CONFIG"]), "OTPAGENT_CONFIG"
    local = Path.cwd() / "config.json"
    if local.is_file():
        return local, "./config.json"
    return None, "embedded default"


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate the config file found by :func:`locate_config` (``path`` first; with
    nothing found, the embedded default). Logs which one was used."""
    file, source = locate_config(path, environ=environ)
    log.info("config_loaded", source=source, path=str(file) if file else None)
    if file is None:
        return parse_config({}, base_dir=Path.cwd(), environ=environ)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(file)!r} not found") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(file)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"{file}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    return parse_config(data, base_dir=file.resolve().parent, environ=environ)


def parse_config(
    data: Any, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """Validate an already-parsed config mapping."""
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError("", f"the config must be a JSON object, got {type(data).__name__}")
    data = _interpolate(data, "", env)
    known = {"storage", "routing", "channels", "otp", "retry", "dispatcher", "cleanup", "sinks", "circuit",
             "server", "monitoring", "fallback", "agent_config", "$schema", "rate_limits", "costs", "tracing"}
    for key in data:
        if key not in known:
            raise ConfigError(key, f"unknown key (expected one of {', '.join(sorted(known - {'$schema'}))})")
    parse_tracing(data.get("tracing"))  # checked here so `config check` names a bad key; read by the agent
    storage = _section(data, "storage", {"backend": "sqlite"})
    if not isinstance(storage["backend"], str):
        raise ConfigError("storage.backend", "must be a string such as 'sqlite' or 'postgres'")
    if storage["backend"] == "sqlite":
        storage.setdefault("path", "otpagent.db")
    legacy = _section(data, "agent_config", {})
    if "database_path" in legacy and "path" not in storage:
        storage = {**storage, "path": legacy["database_path"]}
    routing = _section(data, "routing", {"strategy": "priority"})
    if not isinstance(routing.get("strategy", "priority"), str):
        raise ConfigError("routing.strategy", "must be a string naming a routing strategy")
    dispatcher = _build(DispatcherConfig, _section(data, "dispatcher", {}), "dispatcher")
    if "max_workers" in legacy:
        dispatcher = attrs.evolve(dispatcher, workers=_int(legacy["max_workers"], "agent_config.max_workers", 1))
    _check_dispatcher(dispatcher)
    retry = _build(RetryConfig, _section(data, "retry", {}), "retry")
    _check(retry.max_attempts >= 1, "retry.max_attempts", "must be at least 1")
    _check(0 < retry.base_delay_seconds <= retry.max_delay_seconds, "retry.base_delay_seconds",
           "must be positive and at most retry.max_delay_seconds")
    otp_section = _section(data, "otp", {})
    if "lockout_seconds" in otp_section:
        raise ConfigError("otp.lockout_seconds", "no longer exists: remove it. Wrong guesses now count against the "
                                                 "live code (otp.max_attempts per code, then the code is dead) and "
                                                 "against the caller, never against the recipient, so nobody can "
                                                 "lock a number out")
    fraud_guard = parse_fraud_guard(otp_section.pop("fraud_guard", None), "otp.fraud_guard")
    otp = attrs.evolve(_build(OtpConfig, otp_section, "otp"), fraud_guard=fraud_guard)
    _check(4 <= otp.length <= 10, "otp.length", "must be from 4 to 10 digits")
    _check(0 < otp.ttl_seconds <= 600, "otp.ttl_seconds", "must be positive and at most 600 (10 minutes)")
    _check(otp.max_attempts >= 1, "otp.max_attempts", "must be at least 1")
    _check("{code}" in otp.message, "otp.message", "must contain the {code} placeholder")
    if not isinstance(otp.messages, Mapping):
        raise ConfigError("otp.messages", "must be an object mapping locales to templates")
    for tag, template in otp.messages.items():
        _check(isinstance(template, str) and "{code}" in template, f"otp.messages.{tag}",
               "must be a string containing the {code} placeholder")
    for key in ("per_country_per_minute", "global_per_minute", "global_failures_per_minute"):
        value = getattr(otp, key)
        if value is not None:
            _int(value, f"otp.{key}", 1)
    if otp.secret is not None and (not isinstance(otp.secret, str) or len(otp.secret) < 16):
        raise ConfigError("otp.secret", "must be a string of at least 16 characters")
    if otp.key_file is not None:
        _check(isinstance(otp.key_file, str) and bool(otp.key_file.strip()), "otp.key_file",
               "must be a file path (relative paths are read from the config file's directory)")
        _check(otp.secret is None, "otp.key_file", "set either otp.secret or otp.key_file, not both: the secret "
                                                   "would be used and the key file ignored")
    otp = attrs.evolve(otp, allowed_countries=tuple(c.upper() for c in otp.allowed_countries))
    cleanup = _build(CleanupConfig, _section(data, "cleanup", {}), "cleanup")
    _check(cleanup.retain_days >= 0, "cleanup.retain_days", "must not be negative")
    circuit = _build(BreakerSettings, _section(data, "circuit", {}), "circuit")
    _check(0 < circuit.error_rate <= 1, "circuit.error_rate", "must be in (0, 1]")
    _check(circuit.consecutive_failures >= 1, "circuit.consecutive_failures", "must be at least 1")
    channels = _channels(data.get("channels"), data)
    sinks_raw = data.get("sinks", [{"plugin": "log"}])
    if not isinstance(sinks_raw, list):
        raise ConfigError("sinks", "must be a list of objects like {\"plugin\": \"log\"}")
    sinks = []
    for i, sink in enumerate(sinks_raw):
        if not isinstance(sink, Mapping) or not isinstance(sink.get("plugin"), str):
            raise ConfigError(f"sinks[{i}]", "must be an object with a \"plugin\" name")
        sinks.append(dict(sink))
    server = _section(data, "server", {})
    return AgentConfig(
        storage=storage, routing=routing, channels=tuple(channels), otp=otp, retry=retry,
        dispatcher=dispatcher, cleanup=cleanup, circuit=circuit, sinks=tuple(sinks), server=server,
        base_dir=base_dir or Path.cwd(), raw=data,
    )


def _check_dispatcher(d: DispatcherConfig) -> None:
    _check(d.workers >= 1, "dispatcher.workers", "must be at least 1")
    _check(d.lease_seconds >= MIN_LEASE_SECONDS, "dispatcher.lease_seconds",
           f"must be at least {MIN_LEASE_SECONDS:g} s: a shorter lease can lapse while its worker is alive "
           "(a slow commit or a pause on a busy machine) and its messages would be sent twice")
    beat = d.heartbeat_seconds
    if beat is not None:
        _check(not isinstance(beat, bool) and isinstance(beat, int | float) and beat > 0,
               "dispatcher.heartbeat_seconds", f"must be a positive number of seconds, got {beat!r}")
    _check(d.heartbeat_interval <= d.lease_seconds / 3.0,
           "dispatcher.heartbeat_seconds" if beat is not None else "dispatcher.lease_seconds",
           f"the heartbeat ({d.heartbeat_interval:g} s) must leave slack within the lease "
           f"({d.lease_seconds:g} s): renew at most every third of dispatcher.lease_seconds, so that a "
           "late renewal or two never lose a live worker's leases")
    _check(d.poll_interval_seconds > 0, "dispatcher.poll_interval_seconds", "must be positive")
    _check(d.channel_timeout_seconds > 0, "dispatcher.channel_timeout_seconds", "must be positive")


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set")

        return _ENV.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _section(data: Mapping[str, Any], key: str, default: Mapping[str, Any]) -> dict[str, Any]:
    value = data.get(key, default)
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a JSON object, got {type(value).__name__}")
    return {**default, **value} if key in ("storage", "routing") else dict(value)


def _check(ok: bool, path: str, reason: str) -> None:
    if not ok:
        raise ConfigError(path, reason)


def _int(value: Any, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(path, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _build(cls: Any, section: Mapping[str, Any], path: str) -> Any:
    """Build an attrs config class from a section, checking names and types of every key."""
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(f"{path}.{key}", f"unknown key (expected one of {', '.join(fields)})")
        if value is None and fields[key].metadata.get("nullable"):
            kwargs[key] = None  # null turns the setting off
            continue
        kwargs[key] = _coerce(value, fields[key].default, f"{path}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool) and default is not None:
        return _int(value, path)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(path, f"must be a non-negative number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(path, "must be a list of strings")
        return tuple(value)
    if isinstance(default, str) or default is None:
        if value is None:
            return None
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {type(value).__name__}")
        if default is None and isinstance(value, bool):
            raise ConfigError(path, f"invalid value {value!r}")
        return value
    return value


def _channels(raw: Any, data: Mapping[str, Any]) -> list[ChannelConfig]:
    if raw is None:
        return [
            ChannelConfig(name=f"console-{kind}", plugin="console", kind=kind, enabled=True, cost=0.0,
                          weight=1.0, rate_limit=None, settings={"plugin": "console", "kind": kind})
            for kind in (ChannelKind.VOICE, ChannelKind.SMS, ChannelKind.WHATSAPP, ChannelKind.EMAIL)
        ]
    if not isinstance(raw, Mapping):
        raise ConfigError("channels", "must be a JSON object mapping channel names to sections")
    legacy_costs = data.get("costs", {}) if isinstance(data.get("costs"), Mapping) else {}
    legacy_limits = data.get("rate_limits", {}) if isinstance(data.get("rate_limits"), Mapping) else {}
    out = []
    for name, section in raw.items():
        path = f"channels.{name}"
        if not isinstance(section, Mapping):
            raise ConfigError(path, "must be a JSON object")
        plugin = section.get("plugin") or DEFAULT_CHANNEL_PLUGINS.get(str(name).upper())
        if not isinstance(plugin, str):
            raise ConfigError(f"{path}.plugin", "missing: name the channel plugin (e.g. \"console\", \"twilio-sms\")")
        kind = section.get("kind")
        if kind is not None and kind not in {k.value for k in ChannelKind}:
            raise ConfigError(f"{path}.kind", f"unknown kind {kind!r} (expected sms, whatsapp, voice or email)")
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{path}.enabled", "must be true or false")
        cost_raw = section.get("cost", section.get("cost_per_message", legacy_costs.get(name)))
        cost = None
        if cost_raw is not None:
            if isinstance(cost_raw, bool) or not isinstance(cost_raw, int | float) or cost_raw < 0:
                raise ConfigError(f"{path}.cost", f"must be a non-negative number, got {cost_raw!r}")
            cost = float(cost_raw)
        weight = section.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ConfigError(f"{path}.weight", "must be a positive number")
        limit = section.get("rate_limit", legacy_limits.get(name))
        budget = section.get("daily_budget")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 0):
            raise ConfigError(f"{path}.daily_budget", f"must be a non-negative number, got {budget!r}")
        api_config = section.get("api_config", {})
        if not isinstance(api_config, Mapping):
            raise ConfigError(f"{path}.api_config", "must be a JSON object")
        out.append(ChannelConfig(name=str(name), plugin=plugin, kind=kind, enabled=enabled, cost=cost,
                                 weight=float(weight), rate_limit=_rate_limit(limit, f"{path}.rate_limit"),
                                 settings=dict(section),
                                 daily_budget=None if budget is None else float(budget)))
    if not any(c.enabled for c in out):
        raise ConfigError("channels", "no channel is enabled")
    return out


def _rate_limit(value: Any, path: str) -> RateLimitConfig | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # The original product wrote limits as messages per minute.
        if value <= 0:
            raise ConfigError(path, "must be positive")
        return RateLimitConfig(per_second=float(value) / 60.0, burst=max(1, int(value) // 6))
    if not isinstance(value, Mapping):
        raise ConfigError(path, "must be {\"per_second\": N, \"burst\": M} or messages per minute")
    for key in value:
        if key not in ("per_second", "per_minute", "burst"):
            raise ConfigError(f"{path}.{key}", "unknown key (expected per_second, per_minute, burst)")
    if "per_second" in value:
        rate = value["per_second"]
    elif "per_minute" in value:
        rate = value["per_minute"] / 60.0 if isinstance(value["per_minute"], int | float) else None
    else:
        raise ConfigError(path, "needs per_second (or per_minute)")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise ConfigError(f"{path}.per_second", f"must be a positive number, got {rate!r}")
    burst = value.get("burst", max(1, int(rate)))
    _int(burst, f"{path}.burst", 1)
    return RateLimitConfig(per_second=float(rate), burst=int(burst))
