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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from otpagent.circuit import BreakerSettings
from otpagent.errors import ConfigError
from otpagent.errors import collect_config_errors as _collect
from otpagent.fraud.settings import FraudGuardSettings
from otpagent.logs import get_logger
from otpagent.model import ChannelKind
from otpagent.redact import redacted_repr
from otpagent.settings import setting, structure
from otpagent.tracing import parse_tracing

__all__ = [
    "COMMON_CHANNEL_KEYS",
    "AgentConfig",
    "ChannelConfig",
    "ChannelSection",
    "ConfigFile",
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


log = get_logger("otpagent.config")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@attrs.frozen
class RateLimitConfig:
    per_second: float
    burst: int


@attrs.frozen
class RateLimitSection:
    """A channel's rate limit: ``per_second`` (or ``per_minute``) and a ``burst``."""

    per_second: float | None = setting(None, gt=0, doc="Messages per second")
    per_minute: float | None = setting(None, gt=0, doc="Messages per minute (instead of per_second)")
    burst: int | None = setting(None, ge=1, doc="Messages at once (default: one second's worth)")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.per_second is None and self.per_minute is None:
            yield "per_second", "required: set per_second (or per_minute)"


@attrs.frozen
class ChannelSection:
    """The keys of a channel section that the core reads (its plugin checks the rest)."""

    plugin: str | None = setting(None, min_length=1, doc="The channel plugin (default for SMS, WhatsApp, "
                                                         "Call/Voice and Email: the Twilio/SendGrid one)")
    kind: str | None = setting(None, choices=[k.value for k in ChannelKind],
                               doc="sms, whatsapp, voice or email (plugins that serve several kinds)")
    enabled: bool = setting(True)
    cost: float | None = setting(None, ge=0, doc="Price of one message, for cost-aware routing and budgets")
    cost_per_message: float | None = setting(None, ge=0, doc="The original name of cost")
    weight: float = setting(1.0, gt=0, doc="Share of traffic among channels of a kind")
    rate_limit: float | RateLimitSection | None = setting(
        None, doc="{\"per_second\": N, \"burst\": M}, or messages per minute")
    daily_budget: float | None = setting(None, ge=0, doc="Spend per UTC day after which the channel is skipped")
    api_config: Mapping[str, Any] = setting(factory=dict, doc="The plugin's provider settings")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if isinstance(self.rate_limit, float) and self.rate_limit <= 0:
            yield "rate_limit", "must be positive"


#: Keys of a channel section that the core itself reads; channel plugins accept these beside
#: their own (and should reject anything else, naming the key).
COMMON_CHANNEL_KEYS = frozenset(f.name for f in attrs.fields(ChannelSection))


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
    """How often and how late a failed send is tried again."""

    max_attempts: int = setting(5, ge=1)
    base_delay_seconds: float = setting(1.0, gt=0)
    max_delay_seconds: float = setting(300.0, gt=0)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.base_delay_seconds > self.max_delay_seconds:
            yield "base_delay_seconds", "must be positive and at most retry.max_delay_seconds"


def _template_problem(template: str) -> str | None:
    return None if "{code}" in template else "must contain the {code} placeholder"


@attrs.frozen
class OtpConfig:
    """One-time passcodes: length, lifetime, guesses, resend limits, message templates."""

    #: False runs the agent without OTPs (``send_otp``/``verify_otp`` refuse), so a storage
    #: backend without the OTP store capability will do.
    enabled: bool = setting(True)
    length: int = setting(6, ge=4, le=10, doc="Digits in a code")
    ttl_seconds: float = setting(300.0, gt=0, le=600, doc="Lifetime of a code (at most 10 minutes)")
    #: Wrong guesses a live code survives; the one that reaches it kills the code.
    max_attempts: int = setting(5, ge=1, doc="Wrong guesses a live code survives")
    resend_cooldown_seconds: float = setting(30.0, ge=0)
    max_per_hour: int = setting(5, ge=0)
    allowed_countries: tuple[str, ...] = setting((), doc="ISO 3166 codes; empty: every country")
    per_country_per_minute: int | None = setting(None, ge=1)
    global_per_minute: int | None = setting(None, ge=1)
    #: Wrong guesses against live codes per minute, across the fleet, before every verify is
    #: refused (``RateLimited``) until the rate falls; null turns the guard off.
    global_failures_per_minute: int | None = setting(600, ge=1, doc="null turns the guard off")
    voice_enabled: bool = setting(False)
    message: str = setting("Your verification code is {code}. It expires in {minutes} minutes. Never share it.",
                           doc="Template with {code} and {minutes}")
    #: Per-locale bodies (BCP 47 tag -> template); ``send_otp(locale=...)`` picks the exact tag,
    #: then its language ("pt-BR" -> "pt"), then ``message``.
    messages: Mapping[str, str] = setting(factory=dict, doc="Per-locale templates (BCP 47 tag -> template)")
    secret: str | None = setting(None, secret=True, doc="Master OTP secret (at least 16 characters)")
    #: Where the master OTP secret is kept when neither ``secret`` nor ``$OTPAGENT_OTP_SECRET``
    #: is set: ``otpagent.key`` beside the config file by default (see :mod:`otpagent.otp_keys`).
    key_file: str | None = setting(None, doc="File holding the master OTP secret")
    #: The SMS-pumping guard (``otp.fraud_guard``, docs/fraud.md); on by default.
    fraud_guard: FraudGuardSettings = setting(factory=FraudGuardSettings, doc="The SMS-pumping guard (docs/fraud.md)")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if (problem := _template_problem(self.message)) is not None:
            yield "message", problem
        for tag, template in self.messages.items():
            if _template_problem(template) is not None:
                yield f"messages.{tag}", "must be a string containing the {code} placeholder"
        if self.secret is not None and len(self.secret) < 16:
            yield "secret", "must be a string of at least 16 characters"
        if self.key_file is not None and not self.key_file.strip():
            yield "key_file", "must be a file path (relative paths are read from the config file's directory)"
        if self.key_file is not None and self.secret is not None:
            yield "key_file", ("set either otp.secret or otp.key_file, not both: the secret would be used and "
                               "the key file ignored")

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

    #: Sends in hand at once. A provider call takes 100-500 ms, so a process sends at most
    #: ``workers / latency`` messages a second: 64 keep a burst of OTPs moving (128-640/s per
    #: process) where 16 made the last of 500 wait ~8 s. With a fast channel more in hand also
    #: means bigger claims and group commits (fewer fsyncs per message on SQLite). Four threads
    #: run them while the work is the messages' own; more start (up to this) while a provider
    #: holds them (:mod:`otpagent.workerpool`).
    workers: int = setting(64, ge=1)
    lease_seconds: float = setting(
        6.0, ge=MIN_LEASE_SECONDS,
        reason=f"must be at least {MIN_LEASE_SECONDS:g} s: a shorter lease can lapse while its worker is alive "
               "(a slow commit or a pause on a busy machine) and its messages would be sent twice")
    #: Seconds between lease renewals; None: a quarter of the lease.
    heartbeat_seconds: float | None = setting(None, gt=0, reason="must be a positive number of seconds",
                                               doc="Seconds between lease renewals (default: lease/4)")
    poll_interval_seconds: float = setting(0.2, gt=0)
    channel_timeout_seconds: float = setting(15.0, gt=0)
    channel_timeout_grace_seconds: float = setting(5.0, ge=0)

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_seconds / 4.0 if self.heartbeat_seconds is None else self.heartbeat_seconds

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.heartbeat_interval > self.lease_seconds / 3.0:
            yield ("heartbeat_seconds" if self.heartbeat_seconds is not None else "lease_seconds",
                   f"the heartbeat ({self.heartbeat_interval:g} s) must leave slack within the lease "
                   f"({self.lease_seconds:g} s): renew at most every third of dispatcher.lease_seconds, so that a "
                   "late renewal or two never lose a live worker's leases")


@attrs.frozen
class CleanupConfig:
    """How long finished messages are kept."""

    retain_days: float = setting(30.0, ge=0)
    interval_seconds: float = setting(3600.0, gt=0)


@attrs.frozen
class LegacyAgentConfig:
    """The original product's ``agent_config`` section (``database_path``, ``max_workers``)."""

    database_path: str | None = setting(None, doc="The original name of storage.path")
    max_workers: int | None = setting(None, ge=1, doc="The original name of dispatcher.workers")


@attrs.frozen
class StorageSection:
    """Where the queue lives; the backend checks its own keys."""

    backend: str = setting("sqlite", min_length=1, doc="sqlite, postgres, or a plugin's backend")


@attrs.frozen
class RoutingSection:
    """Which routing strategy picks channels; the strategy checks its own keys."""

    strategy: str = setting("priority", min_length=1, doc="simple, priority, adaptive, or a plugin's strategy")


@attrs.frozen
class SinkSection:
    """An event sink; the sink checks its own keys."""

    plugin: str = setting(min_length=1, doc="log, webhook, or a plugin's sink")


@attrs.frozen
class ConfigFile:
    """config.json as written: each section checked here (plugins check their own sections)."""

    schema: str | None = setting(None, key="$schema", doc="The JSON Schema editors use (otpagent config schema)")
    storage: Mapping[str, Any] = setting(factory=dict, doc="The storage backend and its settings")
    routing: Mapping[str, Any] = setting(factory=dict, doc="The routing strategy and its settings")
    channels: Mapping[str, Mapping[str, Any]] | None = setting(None, doc="Channel name -> section")
    otp: OtpConfig = setting(factory=OtpConfig)
    retry: RetryConfig = setting(factory=RetryConfig)
    dispatcher: DispatcherConfig = setting(factory=DispatcherConfig)
    cleanup: CleanupConfig = setting(factory=CleanupConfig)
    circuit: BreakerSettings = setting(factory=BreakerSettings)
    sinks: tuple[Mapping[str, Any], ...] = setting(({"plugin": "log"},), doc="Where events go")
    server: Mapping[str, Any] = setting(factory=dict, doc="The HTTP service (otpagent serve)")
    tracing: Mapping[str, Any] = setting(factory=dict, doc='OpenTelemetry traces: {"enabled": true, false or "auto"}')
    monitoring: Mapping[str, Any] = setting(factory=dict, doc="Ignored (the original product's section)")
    fallback: Mapping[str, Any] = setting(factory=dict, doc="Ignored (the original product's section)")
    agent_config: LegacyAgentConfig = setting(factory=LegacyAgentConfig)
    rate_limits: Mapping[str, float | RateLimitSection] = setting(
        factory=dict, doc="The original product's rate limits by channel name (messages per minute)")
    costs: Mapping[str, float] = setting(factory=dict, doc="The original product's costs by channel name")


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
    """Validate an already-parsed config mapping; a :class:`ConfigError` names every mistake."""
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError("", f"the config must be a JSON object, got {type(data).__name__}")
    data = _interpolate(data, "", env)
    errors: list[ConfigError] = []
    file = _collect(errors, structure, ConfigFile, _without_removed_keys(data, errors))
    if file is None:
        # The sections that did structure are still worth checking for their own mistakes.
        _collect(errors, _check_sections, data)
        raise ConfigError.combine(errors)
    storage = _collect(errors, _storage, file)
    routing = {"strategy": "priority", **file.routing}
    _collect(errors, structure, RoutingSection, {"strategy": routing["strategy"]}, path="routing")
    channels = _collect(errors, _channels, file)
    sinks = _collect(errors, _sinks, file.sinks)
    _collect(errors, _server, file.server)
    _collect(errors, parse_tracing, file.tracing or None)  # read again by the agent
    if errors:
        raise ConfigError.combine(errors)
    assert storage is not None and channels is not None and sinks is not None
    dispatcher = file.dispatcher
    if file.agent_config.max_workers is not None:
        dispatcher = attrs.evolve(dispatcher, workers=file.agent_config.max_workers)
    otp = attrs.evolve(file.otp, allowed_countries=tuple(c.upper() for c in file.otp.allowed_countries),
                       fraud_guard=file.otp.fraud_guard.normalized())
    return AgentConfig(
        storage=storage, routing=routing, channels=tuple(channels), otp=otp, retry=file.retry,
        dispatcher=dispatcher, cleanup=file.cleanup, circuit=file.circuit, sinks=tuple(sinks),
        server=dict(file.server), base_dir=base_dir or Path.cwd(), raw=data,
    )


def _without_removed_keys(data: Mapping[str, Any], errors: list[ConfigError]) -> Mapping[str, Any]:
    """``data`` without keys that once existed, each reported with what replaced it."""
    otp = data.get("otp")
    if isinstance(otp, Mapping) and "lockout_seconds" in otp:
        errors.append(ConfigError("otp.lockout_seconds", _LOCKOUT_REMOVED))
        return {**data, "otp": {k: v for k, v in otp.items() if k != "lockout_seconds"}}
    return data


_LOCKOUT_REMOVED = ("no longer exists: remove it. Wrong guesses now count against the live code (otp.max_attempts "
                    "per code, then the code is dead) and against the caller, never against the recipient, so "
                    "nobody can lock a number out")


def _check_sections(data: Mapping[str, Any]) -> None:
    """The checks that need the sections' values, on whichever sections are well-formed."""
    errors: list[ConfigError] = []
    if isinstance(data.get("channels"), Mapping) and all(isinstance(v, Mapping) for v in data["channels"].values()):
        _collect(errors, _channel_list, data["channels"], {}, {})
    if isinstance(data.get("sinks"), list) and all(isinstance(s, Mapping) for s in data["sinks"]):
        _collect(errors, _sinks, tuple(data["sinks"]))
    if isinstance(data.get("server"), Mapping):
        _collect(errors, _server, data["server"])
    if errors:
        raise ConfigError.combine(errors)


def _storage(file: ConfigFile) -> dict[str, Any]:
    storage = {"backend": "sqlite", **file.storage}
    if not isinstance(storage["backend"], str):
        raise ConfigError("storage.backend", "must be a string such as 'sqlite' or 'postgres'")
    if storage["backend"] == "sqlite":
        storage.setdefault("path", "otpagent.db")
    if file.agent_config.database_path is not None and "path" not in file.storage:
        storage["path"] = file.agent_config.database_path
    return storage


def _sinks(sinks: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
    errors: list[ConfigError] = []
    for i, sink in enumerate(sinks):
        _collect(errors, structure, SinkSection, {"plugin": sink.get("plugin")}, path=f"sinks[{i}]")
    if errors:
        raise ConfigError.combine(errors)
    return [dict(sink) for sink in sinks]


def _server(section: Mapping[str, Any]) -> None:
    from otpagent.server.settings import parse_server_settings

    parse_server_settings(section)


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


def _default_channels() -> list[ChannelConfig]:
    return [
        ChannelConfig(name=f"console-{kind}", plugin="console", kind=kind, enabled=True, cost=0.0,
                      weight=1.0, rate_limit=None, settings={"plugin": "console", "kind": kind})
        for kind in (ChannelKind.VOICE, ChannelKind.SMS, ChannelKind.WHATSAPP, ChannelKind.EMAIL)
    ]


def _channels(file: ConfigFile) -> list[ChannelConfig]:
    if file.channels is None:
        return _default_channels()
    out = _channel_list(file.channels, file.costs, file.rate_limits)
    if not any(c.enabled for c in out):
        raise ConfigError("channels", "no channel is enabled")
    return out


def _channel_list(raw: Mapping[str, Mapping[str, Any]], legacy_costs: Mapping[str, float],
                  legacy_limits: Mapping[str, float | RateLimitSection]) -> list[ChannelConfig]:
    """Each channel's core keys, checked; every mistake of every channel is reported."""
    errors: list[ConfigError] = []
    out = []
    for name, section in raw.items():
        channel = _collect(errors, _channel, str(name), section, legacy_costs.get(name),
                           legacy_limits.get(name))
        if channel is not None:
            out.append(channel)
    if errors:
        raise ConfigError.combine(errors)
    return out


def _channel(name: str, section: Mapping[str, Any], legacy_cost: float | None,
             legacy_limit: float | RateLimitSection | None) -> ChannelConfig:
    path = f"channels.{name}"
    core = structure(ChannelSection, {k: v for k, v in section.items() if k in COMMON_CHANNEL_KEYS}, path=path)
    plugin = core.plugin or DEFAULT_CHANNEL_PLUGINS.get(name.upper())
    if plugin is None:
        raise ConfigError(f"{path}.plugin", "missing: name the channel plugin (e.g. \"console\", \"twilio-sms\")")
    cost = next((c for c in (core.cost, core.cost_per_message, legacy_cost) if c is not None), None)
    limit = core.rate_limit if core.rate_limit is not None else legacy_limit
    return ChannelConfig(name=name, plugin=plugin, kind=core.kind, enabled=core.enabled, cost=cost,
                         weight=core.weight, rate_limit=_rate_limit(limit), settings=dict(section),
                         daily_budget=core.daily_budget)


def _rate_limit(value: float | RateLimitSection | None) -> RateLimitConfig | None:
    if value is None:
        return None
    if isinstance(value, float):
        # The original product wrote limits as messages per minute.
        return RateLimitConfig(per_second=value / 60.0, burst=max(1, int(value) // 6))
    rate = value.per_second if value.per_second is not None else (value.per_minute or 0.0) / 60.0
    return RateLimitConfig(per_second=rate, burst=value.burst if value.burst is not None else max(1, int(rate)))
