"""Checking a storage backend's capabilities against what the configuration needs, once.

A backend declares what it provides (``capabilities``); :func:`require` is the one check that a
capability is declared *and* structurally present (``isinstance`` against its runtime-checkable
protocol), raising a :class:`ConfigError` that names the backend, the capability and the config
key that needs it. :func:`check_capabilities` runs it for everything an agent's configuration
needs (:func:`needs_of`) and hands back the typed capabilities the components are built with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import attrs

from otpagent.errors import ConfigError
from otpagent.protocols import (
    BatchUpdates,
    Capability,
    Housekeeping,
    OtpStore,
    ProviderEvents,
    RateLimits,
    SharedState,
    StorageBackend,
    StreamedEnqueue,
    WebhookOutboxes,
    WorkWakeup,
)

if TYPE_CHECKING:
    from otpagent.config import AgentConfig

__all__ = ["AgentCapabilities", "Need", "check_capabilities", "describe", "needs_of", "provides", "require"]


@attrs.frozen
class _Info:
    protocol: Any  # the runtime-checkable protocol class
    label: str
    members: tuple[str, ...]


def _members(protocol: Any) -> tuple[str, ...]:
    """The methods a protocol requires, read from the protocol itself (so they never drift)."""
    return tuple(name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))


_INFO: dict[Capability, _Info] = {
    capability: _Info(protocol, label, _members(protocol))
    for capability, protocol, label in (
        (Capability.SHARED_STATE, SharedState, "shared state"),
        (Capability.RATE_LIMITS, RateLimits, "rate limit"),
        (Capability.OTP_STORE, OtpStore, "OTP store"),
        (Capability.PROVIDER_EVENTS, ProviderEvents, "provider events"),
        (Capability.HOUSEKEEPING, Housekeeping, "housekeeping"),
        (Capability.WEBHOOK_OUTBOXES, WebhookOutboxes, "webhook outbox"),
        (Capability.WORK_WAKEUP, WorkWakeup, "work wake-up"),
        (Capability.BATCH_UPDATES, BatchUpdates, "batch updates"),
        (Capability.STREAMED_ENQUEUE, StreamedEnqueue, "streamed enqueue"),
    )
}


def describe(capability: Capability) -> str:
    """``the webhook outbox capability (WebhookOutboxes: webhook_outbox())``."""
    info = _INFO[capability]
    members = ", ".join(f"{m}()" for m in info.members)
    return f"the {info.label} capability ({info.protocol.__name__}: {members})"


def provides(storage: StorageBackend, capability: Capability) -> bool:
    """Whether the backend declares the capability and has every member of its protocol."""
    return capability in storage.capabilities and isinstance(storage, _INFO[capability].protocol)


@overload
def require(storage: StorageBackend, capability: Literal[Capability.SHARED_STATE], *, config_path: str,
            needed_by: str) -> SharedState: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.RATE_LIMITS], *, config_path: str,
            needed_by: str) -> RateLimits: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.OTP_STORE], *, config_path: str,
            needed_by: str) -> OtpStore: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.PROVIDER_EVENTS], *, config_path: str,
            needed_by: str) -> ProviderEvents: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.HOUSEKEEPING], *, config_path: str,
            needed_by: str) -> Housekeeping: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.WEBHOOK_OUTBOXES], *, config_path: str,
            needed_by: str) -> WebhookOutboxes: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.WORK_WAKEUP], *, config_path: str,
            needed_by: str) -> WorkWakeup: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.BATCH_UPDATES], *, config_path: str,
            needed_by: str) -> BatchUpdates: ...
@overload
def require(storage: StorageBackend, capability: Literal[Capability.STREAMED_ENQUEUE], *, config_path: str,
            needed_by: str) -> StreamedEnqueue: ...
@overload
def require(storage: StorageBackend, capability: Capability, *, config_path: str, needed_by: str) -> object: ...
def require(storage: StorageBackend, capability: Capability, *, config_path: str, needed_by: str) -> object:
    """The backend as the capability's protocol, or a ConfigError at ``config_path`` saying
    which capability ``needed_by`` (``"the webhook sink"``) is missing, and why.
    """
    name = storage.name
    if capability not in storage.capabilities:
        raise ConfigError(config_path, f"the storage backend {name!r} does not provide {describe(capability)}, "
                                       f"which {needed_by} needs")
    info = _INFO[capability]
    if not isinstance(storage, info.protocol):
        present = set(dir(storage))
        missing = ", ".join(f"{m}()" for m in info.members if m not in present)
        raise ConfigError(config_path, f"the storage backend {name!r} declares the {info.label} capability "
                                       f"({info.protocol.__name__}) but lacks {missing}, which {needed_by} needs")
    return storage


@attrs.frozen(kw_only=True)
class Need:
    """One capability a configuration needs, where, and for what."""

    capability: Capability
    config_path: str
    needed_by: str


_SHARED_STATE_NEED = Need(capability=Capability.SHARED_STATE, config_path="circuit",
                          needed_by="the circuit breakers")
_HOUSEKEEPING_NEED = Need(capability=Capability.HOUSEKEEPING, config_path="cleanup",
                          needed_by="the dispatcher's statistics and cleanup")


def needs_of(config: AgentConfig) -> list[Need]:
    """Every capability the agent built from ``config`` will use, with the key that needs it.

    The service's abuse limits (``server.limits``) are checked when its app is built.
    """
    needs = [_SHARED_STATE_NEED, _HOUSEKEEPING_NEED]
    for channel in config.channels:
        if channel.rate_limit is not None:
            needs.append(Need(capability=Capability.RATE_LIMITS, config_path=f"channels.{channel.name}.rate_limit",
                              needed_by=f"the rate limit of channel {channel.name}"))
    for key, per_minute in (("per_country_per_minute", config.otp.per_country_per_minute),
                            ("global_per_minute", config.otp.global_per_minute)):
        if per_minute:
            needs.append(Need(capability=Capability.RATE_LIMITS, config_path=f"otp.{key}",
                              needed_by="the OTP velocity limits"))
    if config.otp.enabled and config.otp.global_failures_per_minute:
        needs.append(Need(capability=Capability.RATE_LIMITS, config_path="otp.global_failures_per_minute",
                          needed_by="the global rate of failed OTP verifications (null turns it off)"))
    if config.otp.enabled:
        needs.append(Need(capability=Capability.OTP_STORE, config_path="otp.enabled",
                          needed_by="sending and verifying OTPs (set otp.enabled to false to run without)"))
    if config.public_url:
        needs.append(Need(capability=Capability.PROVIDER_EVENTS, config_path="server.public_url",
                          needed_by="provider status callbacks"))
    for i, sink in enumerate(config.sinks):
        if sink.get("plugin") == "webhook":
            needs.append(Need(capability=Capability.WEBHOOK_OUTBOXES, config_path=f"sinks[{i}].plugin",
                              needed_by="the webhook sink"))
    return needs


@attrs.frozen(kw_only=True)
class AgentCapabilities:
    """The typed capabilities an agent runs on: the two every agent needs, and the others
    where the backend provides them (None otherwise, and then the configuration does not
    need them: :func:`check_capabilities` made sure).
    """

    shared_state: SharedState
    housekeeping: Housekeeping
    rate_limits: RateLimits | None = None
    otp_store: OtpStore | None = None
    provider_events: ProviderEvents | None = None
    webhook_outboxes: WebhookOutboxes | None = None
    wakeup: WorkWakeup | None = None
    #: Where present, the dispatcher records outcomes from one writer thread, in batches.
    batch_updates: BatchUpdates | None = None
    #: Where present, a long bulk send is written a chunk at a time while the rest is validated.
    streamed_enqueue: StreamedEnqueue | None = None


def check_capabilities(storage: StorageBackend, config: AgentConfig) -> AgentCapabilities:
    """Check every capability ``config`` needs (raising the first that is missing) and return
    what the components get. A declared wake-up or batch update must be present too, since it
    is then used, and so must a declared streamed enqueue.
    """
    for need in needs_of(config):
        require(storage, need.capability, config_path=need.config_path, needed_by=need.needed_by)
    wakeup = None
    if Capability.WORK_WAKEUP in storage.capabilities:
        wakeup = require(storage, Capability.WORK_WAKEUP, config_path="storage.backend",
                         needed_by="the dispatcher (it waits for work with it when idle)")
    batch_updates = None
    if Capability.BATCH_UPDATES in storage.capabilities:
        batch_updates = require(storage, Capability.BATCH_UPDATES, config_path="storage.backend",
                                needed_by="the dispatcher (it records outcomes in batches with it)")
    streamed_enqueue = None
    if Capability.STREAMED_ENQUEUE in storage.capabilities:
        streamed_enqueue = require(storage, Capability.STREAMED_ENQUEUE, config_path="storage.backend",
                                   needed_by="bulk sends (they hand it their requests in chunks)")
    return AgentCapabilities(
        shared_state=require(storage, Capability.SHARED_STATE, config_path=_SHARED_STATE_NEED.config_path,
                             needed_by=_SHARED_STATE_NEED.needed_by),
        housekeeping=require(storage, Capability.HOUSEKEEPING, config_path=_HOUSEKEEPING_NEED.config_path,
                             needed_by=_HOUSEKEEPING_NEED.needed_by),
        rate_limits=storage if isinstance(storage, RateLimits) and provides(storage, Capability.RATE_LIMITS) else None,
        otp_store=storage if isinstance(storage, OtpStore) and provides(storage, Capability.OTP_STORE) else None,
        provider_events=storage if isinstance(storage, ProviderEvents)
        and provides(storage, Capability.PROVIDER_EVENTS) else None,
        webhook_outboxes=storage if isinstance(storage, WebhookOutboxes)
        and provides(storage, Capability.WEBHOOK_OUTBOXES) else None,
        wakeup=wakeup,
        batch_updates=batch_updates,
        streamed_enqueue=streamed_enqueue,
    )
