"""The callback route against a scripted agent: a callback that beats our own write of the sid."""

from __future__ import annotations

from typing import Any

import attrs

from otpagent.model import Status
from otpagent.protocols import ProviderEvent, ProviderEventOutcome, ProviderEventResult
from otpagent_twilio.callbacks import CALL_STATUSES, MESSAGE_STATUSES
from tests.twilio.conftest import AppClient, TwilioCallbacks, callback_app, envelope


@attrs.define
class SlowStorage:
    """Knows the sid only from the ``known_after``-th lookup on (the send is still being recorded)."""

    known_after: int
    lookups: int = 0

    def find_by_provider_id(self, sid: str) -> object | None:
        self.lookups += 1
        return object() if self.lookups >= self.known_after else None


@attrs.define
class ScriptedAgent:
    channels: dict[str, Any]
    storage: SlowStorage
    registry: Any
    applied: list[tuple[str, Status, str | None]] = attrs.Factory(list)
    events: list[ProviderEvent] = attrs.Factory(list)

    def record_provider_event(self, event: ProviderEvent) -> ProviderEventResult:
        self.events.append(event)
        self.applied.append((event.provider_message_id, event.status, event.error_code))
        return ProviderEventResult(outcome=ProviderEventOutcome.APPLIED, message_updated=True)


def _agent(channel: Any, known_after: int) -> ScriptedAgent:
    from otpagent.plugins import build_registry

    return ScriptedAgent(channels={channel.name: channel}, storage=SlowStorage(known_after), registry=build_registry())


def test_a_callback_that_races_our_write_waits_for_the_sid_then_applies(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms")
    sid = channel.send(envelope()).provider_message_id
    agent = _agent(channel, known_after=4)

    response = TwilioCallbacks(fake, AppClient(callback_app(agent))).post(sid, "delivered")

    assert response.status_code == 204
    assert agent.storage.lookups == 4
    assert agent.applied == [(sid, Status.DELIVERED, None)]


def test_a_forged_callback_never_reaches_the_agent(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms")
    sid = channel.send(envelope()).provider_message_id
    agent = _agent(channel, known_after=1)

    response = TwilioCallbacks(fake, AppClient(callback_app(agent))).post(sid, "failed", token="guess")

    assert response.status_code == 403
    assert agent.applied == [] and agent.storage.lookups == 0 and agent.events == []


def test_twilios_error_code_and_message_are_passed_on(fake, make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms")
    sid = channel.send(envelope()).provider_message_id
    agent = _agent(channel, known_after=1)

    TwilioCallbacks(fake, AppClient(callback_app(agent))).post(sid, "undelivered", error_code=30006)

    assert agent.applied == [(sid, Status.UNDELIVERED, "30006")]


def test_every_twilio_status_has_a_mapping() -> None:
    import json

    from tests.twilio.twilio_api import SPEC_PATH

    schemas = json.loads(SPEC_PATH.read_text())["components"]["schemas"]
    outbound = set(schemas["message_enum_status"]["enum"]) - {"receiving", "received"}
    assert outbound == set(MESSAGE_STATUSES)
    assert set(schemas["call_enum_status"]["enum"]) <= set(CALL_STATUSES)
    assert set(schemas["call_enum_event"]["enum"]) <= set(CALL_STATUSES)
