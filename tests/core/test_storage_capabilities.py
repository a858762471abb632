"""Declared storage capabilities: each one the config needs is checked once, when the agent (or
the service's app) is built, and a missing one is an error naming the backend, the capability
and the key that needs it. Components then get typed capabilities, never a backend to probe."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent, MessageRequest, Status
from otpagent.errors import ConfigError
from otpagent.hookspecs import hookimpl
from otpagent.plugins import build_registry, get_plugin_manager
from otpagent.protocols import Capability, PluginContext
from otpagent.testing import InMemoryStorage
from tests.conftest import agent_config

CORE = ("enqueue", "claim_due", "renew_leases", "update_message", "get_message", "get_attempts", "get_events",
        "recent_messages", "find_by_provider_id", "ping", "close")
MEMBERS = {
    Capability.SHARED_STATE: ("get_state", "put_state", "update_state", "states_with_prefix"),
    Capability.RATE_LIMITS: ("acquire", "acquire_all"),
    Capability.OTP_STORE: ("issue_otp", "issue_batch", "verify_otp", "seal_legacy_secrets", "redact_expired_secrets"),
    Capability.PROVIDER_EVENTS: ("apply_provider_event",),
    Capability.HOUSEKEEPING: ("stats", "event_counts", "attempt_counts", "history", "costs_by_day", "cleanup"),
    Capability.WEBHOOK_OUTBOXES: ("webhook_outbox",),
    Capability.WORK_WAKEUP: ("wait_for_work",),
    Capability.BATCH_UPDATES: ("update_messages",),
    Capability.STREAMED_ENQUEUE: ("enqueue_stream",),
}
EVERY_AGENT_NEEDS = {Capability.SHARED_STATE, Capability.HOUSEKEEPING}
#: What OTPs need with the default config: the store, and rate limits for the failure guard.
OTPS_NEED = {Capability.OTP_STORE, Capability.RATE_LIMITS}


def _delegate(member: str) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, member)(*args, **kwargs)

    return call


def lean_storage(settings: Mapping[str, Any], context: PluginContext) -> Any:
    """The in-memory backend, declaring the ``declared`` capabilities but exposing only the
    methods of the ``present`` ones (to stand for a third-party backend that lacks some)."""
    declared = {Capability[name] for name in settings.get("declared", ())}
    present = {Capability[name] for name in settings.get("present", settings.get("declared", ()))}
    members = [*CORE, *(m for c in present for m in MEMBERS[c])]
    namespace: dict[str, Any] = {m: _delegate(m) for m in members}
    namespace.update(name="acme", capabilities=frozenset(declared))
    lean = type("AcmeStorage", (), namespace)()
    lean.inner = InMemoryStorage()
    return lean


class LeanPlugin:
    @hookimpl
    def otpagent_register_storage_backends(self, register: Any) -> None:
        register("acme", lean_storage)


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Callable[..., IntelligentOTPAgent]]:
    """Build an agent on the ``acme`` backend with these capabilities (closed afterwards)."""
    pm = get_plugin_manager()
    plugin = LeanPlugin()
    pm.register(plugin, name="lean-storage-test")
    agents: list[IntelligentOTPAgent] = []

    def make(declared: Sequence[Capability], present: Sequence[Capability] | None = None,
             **overrides: Any) -> IntelligentOTPAgent:
        storage = {"backend": "acme", "declared": [c.name for c in declared],
                   "present": [c.name for c in (declared if present is None else present)]}
        agent = IntelligentOTPAgent(agent_config(tmp_path, storage=storage, **overrides), registry=build_registry(pm))
        agents.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in agents:
            agent.close()
        pm.unregister(plugin)


def test_a_webhook_sink_on_a_backend_without_an_outbox_is_refused_naming_the_key(build) -> None:
    sink = {"plugin": "webhook", "url": "https://hooks.example.com/x", "secret": "whsec_" + "A" * 32}

    with pytest.raises(ConfigError) as caught:
        build(EVERY_AGENT_NEEDS | OTPS_NEED, sinks=[{"plugin": "log"}, sink])

    assert str(caught.value) == (
        "config error at sinks[1].plugin: the storage backend 'acme' does not provide the webhook outbox capability "
        "(WebhookOutboxes: webhook_outbox()), which the webhook sink needs")


def test_a_declared_capability_without_its_methods_is_refused_naming_them(build) -> None:
    declared = EVERY_AGENT_NEEDS | OTPS_NEED

    with pytest.raises(ConfigError) as caught:
        build(declared, present=EVERY_AGENT_NEEDS | {Capability.RATE_LIMITS})

    assert caught.value.path == "otp.enabled"
    assert "declares the OTP store capability (OtpStore) but lacks issue_otp(), issue_batch(), " \
           "verify_otp(), seal_legacy_secrets(), redact_expired_secrets()" in caught.value.reason


@pytest.mark.parametrize(("capability", "path", "overrides"), [
    (Capability.SHARED_STATE, "circuit", {}),
    (Capability.HOUSEKEEPING, "cleanup", {}),
    (Capability.OTP_STORE, "otp.enabled", {}),
    (Capability.RATE_LIMITS, "channels.sms.rate_limit",
     {"channels": {"sms": {"plugin": "console", "kind": "sms", "quiet": True, "rate_limit": {"per_second": 5}}}}),
    (Capability.RATE_LIMITS, "otp.global_per_minute", {"otp": {"global_per_minute": 100}}),
    (Capability.RATE_LIMITS, "otp.global_failures_per_minute", {}),
    (Capability.PROVIDER_EVENTS, "server.public_url", {"server": {"public_url": "https://otp.example"}}),
])
def test_each_need_is_checked_at_the_key_that_needs_it(build, capability: Capability, path: str,
                                                       overrides: dict[str, Any]) -> None:
    everything = set(Capability) - {Capability.WORK_WAKEUP}

    with pytest.raises(ConfigError) as caught:
        build(everything - {capability}, **overrides)

    assert caught.value.path == path
    assert "the storage backend 'acme' does not provide the " in caught.value.reason


def test_otps_can_be_turned_off_for_a_backend_without_an_otp_store(build, outbox) -> None:
    agent = build(EVERY_AGENT_NEEDS, otp={"enabled": False})

    message_id = agent.send_message(MessageRequest(phone_number="+447700900123", message_type="alert",
                                                   content="Security alert"))
    agent.start_processing()

    assert agent.wait_until_idle(10)
    assert agent.get_delivery_report(message_id).status is Status.SENT
    assert outbox.for_message(message_id)
    for call in (lambda: agent.send_otp("+447700900123"), lambda: agent.verify_otp("+447700900123", "123456")):
        with pytest.raises(ConfigError, match=r"at otp\.enabled: OTPs are turned off"):
            call()


def test_components_get_the_capabilities_the_backend_provides(build, make_agent) -> None:
    lean = build(EVERY_AGENT_NEEDS | {Capability.OTP_STORE}, otp={"global_failures_per_minute": None})
    sqlite = make_agent()
    memory = make_agent(storage={"backend": "memory"})

    assert (lean.capabilities.rate_limits, lean.capabilities.provider_events, lean.capabilities.wakeup) == (
        None, None, None)
    assert lean.capabilities.shared_state is lean.storage
    assert sqlite.capabilities.wakeup is sqlite.storage, "SQLite watches data_version"
    assert sqlite.capabilities.webhook_outboxes is sqlite.storage
    assert memory.capabilities.wakeup is memory.storage
    assert memory.capabilities.streamed_enqueue is memory.storage
    assert sqlite.capabilities.streamed_enqueue is sqlite.storage


def test_the_services_abuse_limits_need_rate_limits(build) -> None:
    from otpagent.server.app import create_app
    from otpagent.server.settings import LIMIT_NAMES, parse_server_settings

    agent = build(EVERY_AGENT_NEEDS | {Capability.OTP_STORE}, server={"api_keys": ["k" * 32]},
                  otp={"global_failures_per_minute": None})
    no_limits = dict.fromkeys(LIMIT_NAMES)

    with pytest.raises(ConfigError) as caught:
        create_app(agent)
    create_app(agent, parse_server_settings({"api_keys": ["k" * 32], "limits": no_limits}))

    assert caught.value.path == "server.limits"
    assert "does not provide the rate limit capability (RateLimits: acquire(), acquire_all())" in caught.value.reason


def test_the_memory_backend_runs_the_whole_agent(make_agent, outbox) -> None:
    agent = make_agent(storage={"backend": "memory"})
    agent.start_processing()

    message_id = agent.send_otp("+447700900123")
    code = outbox.code_for(message_id)

    assert agent.verify_otp("+447700900123", code) == (True, "verified")
    assert agent.wait_until_idle(10)
    assert agent.get_metrics()["database_stats"]["total_messages"] == 1


def test_the_memory_backend_takes_no_settings(make_agent) -> None:
    with pytest.raises(ConfigError, match=r"at storage\.path: unknown key"):
        make_agent(storage={"backend": "memory", "path": "x.db"})
