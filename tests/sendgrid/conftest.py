"""Fixtures for the SendGrid plugin tests: the fake API, a key pair, channels and envelopes."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent.model import Envelope, MessageType, Priority
from otpagent.protocols import ChannelSpec, PluginContext
from otpagent_sendgrid.channel import SendGridEmailChannel, create_sendgrid_channel
from tests.sendgrid.fake_sendgrid import FakeSendGrid
from tests.sendgrid.signing import EventSigner

RECIPIENT = "user@example.com"


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture(scope="session")
def signer() -> EventSigner:
    return EventSigner()


def channel_spec(section: dict[str, Any], name: str = "EMAIL", config_dir: Path | None = None) -> ChannelSpec:
    """What the core hands a channel factory for ``section``."""
    return ChannelSpec(name=name, plugin=section.get("plugin", "sendgrid-email"), kind=section.get("kind"),
                       settings=section, api_config=section.get("api_config", {}), cost=section.get("cost"),
                       context=PluginContext(config_dir=config_dir or Path.cwd()))


@pytest.fixture
def section(fake: FakeSendGrid, signer: EventSigner) -> dict[str, Any]:
    """A valid channel section pointing at the fake."""
    return {
        "plugin": "sendgrid-email",
        "api_config": {"api_key": fake.api_key, "from": "no-reply@example.com", "from_name": "Acme",
                       "base_url": fake.base_url, "timeout_seconds": 2, "webhook_public_key": signer.public_key},
        "cost": 0.0006,
    }


@pytest.fixture
def make_channel(section: dict[str, Any]) -> Callable[..., SendGridEmailChannel]:
    """Build a channel from the default section, with top-level and api_config keys changed."""

    def make(api_config: dict[str, Any] | None = None, **top: Any) -> SendGridEmailChannel:
        data = copy.deepcopy(section)
        data["api_config"].update(api_config or {})
        data.update(top)
        return create_sendgrid_channel(channel_spec(data))

    return make


def otp_envelope(code: str = "428913", *, email: str = RECIPIENT, ttl: float = 300.0,
                 message_id: str = "msg_01", **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": message_id, "message_type": MessageType.OTP, "priority": Priority.HIGH,
        "body": f"Your verification code is {code}. It expires in 5 minutes.", "email": email, "code": code,
        "expires_at": time.time() + ttl,
    }
    fields.update(changes)
    return Envelope(**fields)


def text_envelope(body: str, message_type: MessageType = MessageType.ALERT, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "message_id": "msg_02", "message_type": message_type, "priority": Priority.LOW, "body": body,
        "email": RECIPIENT,
    }
    fields.update(changes)
    return Envelope(**fields)
