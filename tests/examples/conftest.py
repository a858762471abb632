"""Fixtures for the ``http-sms`` example plugin: the fake gateway, channels built by the plugin's
factory, and agents built from config with the plugin found through its entry point."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent
from otpagent.model import Envelope, MessageType, Priority
from otpagent.protocols import ChannelSpec, PluginContext
from otpagent_http_sms import create_http_sms_channel
from otpagent_http_sms.channel import HttpSmsChannel
from tests.conftest import agent_config as base_agent_config
from tests.conftest import wait_for
from tests.examples.fake_sms_gateway import TOKEN, FakeSmsGateway

RECIPIENT = "+447700900123"
SENDER = "Acme"


@pytest.fixture
def gateway() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway() as server:
        yield server
    assert server.violations == [], "the channel sent requests the gateway would refuse"


def api_config(gateway: FakeSmsGateway, **overrides: Any) -> dict[str, Any]:
    """A working ``api_config`` for the fake (``None`` removes a key)."""
    config: dict[str, Any] = {"base_url": gateway.base_url, "token": TOKEN, "from": SENDER, "timeout_seconds": 5}
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def channel_spec(api: dict[str, Any], *, name: str = "SMS", clock: Callable[[], float] = time.time,
                 cost: float | None = None, **section: Any) -> ChannelSpec:
    settings = {"plugin": "http-sms", "api_config": api, **section}
    if cost is not None:
        settings["cost"] = cost
    return ChannelSpec(name=name, plugin="http-sms", kind=section.get("kind"), settings=settings, api_config=api,
                       cost=cost, context=PluginContext(config_dir=Path("."), clock=clock))


@pytest.fixture
def make_channel(gateway: FakeSmsGateway) -> Iterator[Callable[..., HttpSmsChannel]]:
    """Build a channel through the plugin's factory, talking to the fake; closed afterwards."""
    made: list[HttpSmsChannel] = []

    def make(*, clock: Callable[[], float] = time.time, cost: float | None = None, **api_overrides: Any
             ) -> HttpSmsChannel:
        channel = create_http_sms_channel(channel_spec(api_config(gateway, **api_overrides), clock=clock, cost=cost))
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def envelope(body: str = "Your Acme code is 482913.", *, code: str | None = "482913", phone: str | None = RECIPIENT,
             message_type: MessageType = MessageType.OTP, message_id: str = "msg-1") -> Envelope:
    return Envelope(message_id=message_id, message_type=message_type, priority=Priority.HIGH, body=body,
                    phone_number=phone, code=code, expires_at=time.time() + 300)


def agent_config(tmp_path: Path, gateway: FakeSmsGateway, *, api: dict[str, Any] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """``SMS`` on the gateway first (the heavier), then a quiet console ``BACKUP`` of the same kind."""
    channels = {
        "SMS": {"plugin": "http-sms", "api_config": api or api_config(gateway), "cost": 0.04, "weight": 2},
        "BACKUP": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(tmp_path / "outbox.jsonl")},
    }
    dispatcher = {"workers": 2, "poll_interval_seconds": 0.02}
    return base_agent_config(tmp_path, **{"channels": channels, "dispatcher": dispatcher, **overrides})


@pytest.fixture
def make_agent(tmp_path: Path, gateway: FakeSmsGateway) -> Iterator[Callable[..., IntelligentOTPAgent]]:
    """Build (and later close) an agent from config; the plugin comes from its entry point."""
    agents: list[IntelligentOTPAgent] = []

    def make(*, clock: Callable[[], float] = time.time, **kwargs: Any) -> IntelligentOTPAgent:
        agent = IntelligentOTPAgent(agent_config(tmp_path, gateway, **kwargs), clock=clock)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def run_until(agent: IntelligentOTPAgent, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Start the workers (if not yet) and poll ``predicate`` with a deadline."""
    agent.start_processing()
    assert wait_for(predicate, timeout), "the agent did not get there in time"
