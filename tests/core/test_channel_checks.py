"""A channel's ``supports`` and ``check`` are plugin code too: one that raises never breaks routing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent, InvalidRequest, MessageRequest, Status
from otpagent.hookspecs import hookimpl
from otpagent.model import Envelope, SendResult
from otpagent.plugins import build_registry, get_plugin_manager
from tests.conftest import agent_config, wait_for


class FussyChannel:
    """``supports`` or ``check`` raises, by its config."""

    def __init__(self, name: str, raises_in: str) -> None:
        self.name = name
        self.kind = "sms"
        self.raises_in = raises_in

    def supports(self, envelope: Envelope) -> bool:
        if self.raises_in == "supports":
            raise KeyError("country table")
        return True

    def check(self, envelope: Envelope) -> str | None:
        if self.raises_in == "check":
            raise ValueError("cannot count segments")
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        return 0.0

    def send(self, envelope: Envelope) -> SendResult:
        return SendResult.accepted("fussy-1")

    def close(self) -> None:
        pass


class _FussyPlugin:
    @hookimpl
    def otpagent_register_channels(self, register: Any) -> None:
        register("fussy", lambda spec: FussyChannel(spec.name, spec.settings["raises_in"]))


class CountingChannel(FussyChannel):
    """Takes the message or not (``takes``), and records each ``supports`` it is asked."""

    asked: list[str] = []

    def __init__(self, name: str, takes: bool) -> None:
        super().__init__(name, raises_in="")
        self.takes = takes

    def supports(self, envelope: Envelope) -> bool:
        CountingChannel.asked.append(self.name)
        return self.takes


class _CountingPlugin:
    @hookimpl
    def otpagent_register_channels(self, register: Any) -> None:
        register("counting", lambda spec: CountingChannel(spec.name, spec.settings["takes"]))


@pytest.fixture
def registry() -> Iterator[Any]:
    pm = get_plugin_manager()
    plugin = _FussyPlugin()
    counting = _CountingPlugin()
    pm.register(plugin, name="fussy-test")
    pm.register(counting, name="counting-test")
    try:
        yield build_registry(pm, warn=False)
    finally:
        pm.unregister(plugin)
        pm.unregister(counting)


@pytest.mark.parametrize("raises_in", ["supports", "check"])
def test_a_channel_whose_checks_raise_is_skipped_and_another_carries_the_message(
        tmp_path: Path, registry: Any, raises_in: str, caplog: pytest.LogCaptureFixture) -> None:
    channels = {"FUSSY": {"plugin": "fussy", "kind": "sms", "raises_in": raises_in, "weight": 5.0},
                "BACKUP": {"plugin": "console", "kind": "sms", "quiet": True}}
    with IntelligentOTPAgent(agent_config(tmp_path, channels=channels), registry=registry) as agent:
        agent.start_processing()
        message_id = agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))
        assert wait_for(lambda: agent.get_delivery_report(message_id).status is Status.SENT, 15)
        report = agent.get_delivery_report(message_id)

    assert report.channel == "BACKUP" and report.route == ("BACKUP",)
    faults = [r.getMessage() for r in caplog.records if "channel_fault" in r.getMessage()]
    assert faults and f"raised {'KeyError' if raises_in == 'supports' else 'ValueError'} in {raises_in}" in faults[0]


def test_when_the_only_channel_raises_in_check_the_request_is_refused_naming_why(
        tmp_path: Path, registry: Any) -> None:
    channels = {"FUSSY": {"plugin": "fussy", "kind": "sms", "raises_in": "check"}}
    with IntelligentOTPAgent(agent_config(tmp_path, channels=channels), registry=registry) as agent, \
            pytest.raises(InvalidRequest) as exc:
        agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))

    assert "FUSSY: channel FUSSY (fussy) raised ValueError in check: cannot count segments" in str(exc.value)


def test_a_content_refusal_names_the_content_field(tmp_path: Path) -> None:
    channels = {"SMS": {"plugin": "console", "kind": "sms", "quiet": True, "max_length": 10}}
    with IntelligentOTPAgent(agent_config(tmp_path, channels=channels)) as agent, \
            pytest.raises(InvalidRequest) as exc:
        agent.send_message(MessageRequest(phone_number="+447700900123", content="x" * 11))

    assert exc.value.errors[0].field == "content"


def test_provider_callbacks_get_a_narrow_host_not_the_agent(tmp_path: Path) -> None:
    from otpagent.callback_host import AgentCallbackHost
    from otpagent.protocols import CallbackHost, ProviderEvent, ProviderEventOutcome

    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        agent.start_processing()
        message_id = agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))
        assert wait_for(lambda: agent.get_delivery_report(message_id).status is Status.SENT, 15)
        provider_id = agent.get_delivery_report(message_id).provider_message_id
        host = AgentCallbackHost(agent)

        assert isinstance(host, CallbackHost)
        assert not hasattr(host, "storage") and not hasattr(host, "dispatcher")
        with pytest.raises(TypeError):
            host.channels["X"] = host.channels["sms"]  # type: ignore[index]
        assert host.find_attempt(provider_id).message_id == message_id  # type: ignore[arg-type, union-attr]
        assert [a.provider_message_id for a in host.attempts_of(message_id)] == [provider_id]
        result = host.record_provider_event(ProviderEvent(
            source="test", event_id="e1", provider_message_id=provider_id or "", status=Status.DELIVERED))
        assert result.outcome is ProviderEventOutcome.APPLIED
        assert agent.get_delivery_report(message_id).status is Status.DELIVERED


@pytest.mark.parametrize(("first_takes", "asked"), [(True, ["FIRST"]), (False, ["FIRST", "SECOND"])])
def test_intake_asks_the_channels_in_turn_until_one_can_take_the_message(
        tmp_path: Path, registry: Any, first_takes: bool, asked: list[str]) -> None:
    """Every queued message is checked for a channel that can carry it; the checking stops at
    the first that can (a plugin's ``supports`` may be costly, and routing asks again anyway)."""
    channels = {"FIRST": {"plugin": "counting", "kind": "sms", "takes": first_takes},
                "SECOND": {"plugin": "counting", "kind": "sms", "takes": True}}
    with IntelligentOTPAgent(agent_config(tmp_path, channels=channels), registry=registry) as agent:
        CountingChannel.asked.clear()
        agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))
        assert CountingChannel.asked == asked
        CountingChannel.asked.clear()
        agent.send_bulk_messages([MessageRequest(phone_number="+447700900123", content="hi")] * 3)
        assert CountingChannel.asked == asked * 3


def test_when_no_channel_can_take_the_message_every_channel_is_named(tmp_path: Path, registry: Any) -> None:
    channels = {"FIRST": {"plugin": "counting", "kind": "sms", "takes": False},
                "SECOND": {"plugin": "counting", "kind": "sms", "takes": False}}
    with IntelligentOTPAgent(agent_config(tmp_path, channels=channels), registry=registry) as agent, \
            pytest.raises(InvalidRequest) as exc:
        agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))

    assert exc.value.errors[0].field == "phone_number"
    assert "FIRST: cannot reach this recipient" in str(exc.value) and "SECOND: cannot reach" in str(exc.value)
