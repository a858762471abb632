"""Fixtures for the Twilio plugin tests: the fake API, channels built by their factories, envelopes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from otpagent.model import Envelope, MessageType, Priority
from otpagent.protocols import ChannelSpec, PluginContext
from otpagent_twilio.channels import (
    TwilioChannel,
    create_sms_channel,
    create_voice_channel,
    create_whatsapp_channel,
)
from tests.twilio.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

PUBLIC_URL = "https://otp.example"
RECIPIENT = "+447700900123"
SENDER = "+15005550006"
OTP_TEMPLATE = "HX" + "c3" * 16
FACTORIES = {"sms": create_sms_channel, "whatsapp": create_whatsapp_channel, "voice": create_voice_channel}
PLUGINS = {"sms": "twilio-sms", "whatsapp": "twilio-whatsapp", "voice": "twilio-voice"}


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server
    assert server.violations == [], "the client sent requests the real API would refuse"


def api_config(fake: FakeTwilio, **overrides: Any) -> dict[str, Any]:
    """A working api_config for the fake (account SID + auth token, a From number)."""
    config: dict[str, Any] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": SENDER,
                              "base_url": fake.base_url, "timeout_seconds": 2}
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def channel_spec(kind: str, api: dict[str, Any], /, *, name: str | None = None, public_url: str | None = PUBLIC_URL,
                 cost: float | None = None, **section: Any) -> ChannelSpec:
    settings = {"plugin": PLUGINS[kind], "api_config": api, **section}
    if cost is not None:
        settings["cost"] = cost
    return ChannelSpec(name=name or kind.upper(), plugin=PLUGINS[kind], kind=section.get("kind"), settings=settings,
                       api_config=api, cost=cost, context=PluginContext(config_dir=Path("."), public_url=public_url))


@pytest.fixture
def make_channel(fake: FakeTwilio) -> Iterator[Callable[..., TwilioChannel]]:
    """Build a channel of ``kind`` through its factory, talking to the fake; closed afterwards."""
    made: list[TwilioChannel] = []

    def make(kind: str, *, public_url: str | None = PUBLIC_URL, cost: float | None = None,
             section: dict[str, Any] | None = None, **api_overrides: Any) -> TwilioChannel:
        spec = channel_spec(kind, api_config(fake, **api_overrides), public_url=public_url, cost=cost,
                            **(section or {}))
        channel = FACTORIES[kind](spec)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def envelope(body: str = "Your verification code is 482913.", *, code: str | None = "482913",
             phone: str = RECIPIENT, message_type: MessageType = MessageType.OTP, message_id: str = "msg-1",
             expires_in: float | None = 300) -> Envelope:
    return Envelope(message_id=message_id, message_type=message_type, priority=Priority.HIGH, body=body,
                    phone_number=phone, code=code,
                    expires_at=None if expires_in is None else time.time() + expires_in)


# -- agents and the callback route -------------------------------------------------------------


def agent_config(tmp_path: Path, fake: FakeTwilio, *, twilio: dict[str, Any] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """An agent with Twilio channels on the fake plus a quiet console ``BACKUP`` (sms kind)."""
    channels = twilio if twilio is not None else {"SMS": {"plugin": "twilio-sms", "api_config": api_config(fake)}}
    config: dict[str, Any] = {
        "storage": {"backend": "sqlite", "path": str(tmp_path / "otpagent.db")},
        "channels": {**channels, "BACKUP": {"plugin": "console", "kind": "sms", "quiet": True,
                                            "outbox": str(tmp_path / "outbox.jsonl")}},
        "routing": {"strategy": "priority"},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
        "dispatcher": {"workers": 2, "poll_interval_seconds": 0.02},
        "server": {"public_url": PUBLIC_URL},
        "sinks": [],
        "otp": {"key_file": str(tmp_path / "otpagent.key")},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_agent(tmp_path: Path, fake: FakeTwilio) -> Iterator[Callable[..., Any]]:
    """Build (and later close) an IntelligentOTPAgent wired to the fake Twilio API."""
    from otpagent import IntelligentOTPAgent

    agents: list[Any] = []

    def make(**kwargs: Any) -> Any:
        agent = IntelligentOTPAgent(agent_config(tmp_path, fake, **kwargs))
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def callback_app(agent: Any) -> Any:
    """A Starlette app mounting every HTTP route the loaded plugins registered, bound to ``agent``."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from otpagent.callback_host import AgentCallbackHost

    host = AgentCallbackHost(agent)

    def bind(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        async def bound(request: Any) -> Any:
            return await endpoint(request, host)

        return bound

    routes = [Route(r.path, bind(r.endpoint), methods=list(r.methods)) for r in agent.registry.http_routes]
    return Starlette(routes=routes)


class AppClient:
    """A synchronous face on ``httpx.AsyncClient`` over ``ASGITransport`` (one event loop per call)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def post(self, url: str, *, data: dict[str, str], headers: dict[str, str] | None = None) -> Any:
        import asyncio

        import httpx

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
                return await client.post(url, data=data, headers=headers)

        return asyncio.run(go())


class TwilioCallbacks:
    """Posts signed status callbacks, as Twilio would, to the app over httpx."""

    def __init__(self, fake: FakeTwilio, client: AppClient) -> None:
        self.fake = fake
        self.client = client

    def post(self, sid: str, status: str, *, token: str = AUTH_TOKEN, error_code: int | None = None,
             error_message: str | None = None, signature: str | None = None,
             headers: dict[str, str] | None = None, extra: dict[str, str] | None = None) -> Any:
        """POST Twilio's callback for ``sid`` reaching ``status``, signed with ``token``."""
        url, params = self.fake.status_callback(sid, status, error_code=error_code, error_message=error_message,
                                                extra=extra)
        signature = signature if signature is not None else self.fake.sign(url, params, token)
        parts = urlsplit(url)
        return self.client.post(f"{parts.path}?{parts.query}", data=params,
                                headers={"X-Twilio-Signature": signature, **(headers or {})})


@pytest.fixture
def callbacks(fake: FakeTwilio) -> Callable[[Any], TwilioCallbacks]:
    """``callbacks(agent)``: a poster of signed callbacks to the agent's mounted routes."""

    def make(agent: Any) -> TwilioCallbacks:
        return TwilioCallbacks(fake, AppClient(callback_app(agent)))

    return make


def dispatch(agent: Any, message_id: str, timeout: float = 10.0) -> Any:
    """Run the queue until idle and return the message's delivery report."""
    agent.start_processing()
    assert agent.wait_until_idle(timeout), "the agent did not go idle"
    return agent.get_delivery_report(message_id)
