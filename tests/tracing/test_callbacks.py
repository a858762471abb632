"""A provider's status callback gets a span linked to its message's trace (Twilio SDK, fake Twilio)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from otpagent import IntelligentOTPAgent, MessageRequest, Priority, Status
from tests.tracing.conftest import Spans
from tests.twilio.conftest import PUBLIC_URL, RECIPIENT, AppClient, TwilioCallbacks, agent_config, dispatch
from tests.twilio.fake_twilio import AUTH_TOKEN, FakeTwilio


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server
    assert server.violations == [], "the client sent requests the real API would refuse"


@pytest.fixture
def callbacks(fake: FakeTwilio) -> Callable[[Any], TwilioCallbacks]:
    """Signed callbacks posted to the service's whole app (its tracing middleware included)."""
    from otpagent.server import create_app

    return lambda agent: TwilioCallbacks(fake, AppClient(create_app(agent)))


def test_a_callback_span_is_linked_to_its_message_and_its_fallback_continues_the_trace(
        tmp_path: Path, fake: FakeTwilio, callbacks: Callable[[Any], Any], spans: Spans) -> None:
    config = agent_config(tmp_path, fake, tracing={"enabled": True},
                          server={"public_url": PUBLIC_URL, "api_keys": ["key-0123456789abcdef"]})
    with IntelligentOTPAgent(config, tracer_provider=spans.provider) as agent:
        message_id = agent.send_message(MessageRequest(phone_number=RECIPIENT, message_type="alert",
                                                       content="Security alert", priority=Priority.HIGH,
                                                       channels=("SMS", "BACKUP")))
        report = dispatch(agent, message_id)
        assert report.status is Status.SENT
        sid = report.provider_message_id

        response = callbacks(agent).post(sid, "undelivered", error_code=30003,
                                         error_message=f"Unreachable destination handset {RECIPIENT}")
        assert response.status_code == 204
        assert agent.wait_until_idle(10)
        assert agent.get_delivery_report(message_id).channel == "BACKUP"  # type: ignore[union-attr]

    enqueue = spans.one("send_message otpagent")
    twilio_call = spans.one("send SMS")
    assert twilio_call.kind is SpanKind.CLIENT
    assert twilio_call.attributes["otpagent.provider.message_id"] == sid
    assert twilio_call.attributes["otpagent.channel.kind"] == "sms"

    callback = spans.one("twilio callback")
    assert [link.context.span_id for link in callback.links] == [enqueue.context.span_id]
    assert callback.links[0].context.trace_id == enqueue.context.trace_id
    assert callback.attributes["messaging.message.id"] == message_id
    assert callback.attributes["otpagent.provider.message_id"] == sid
    assert callback.attributes["otpagent.delivery.status"] == "undelivered"
    assert callback.attributes["otpagent.error.code"] == "30003"
    assert callback.attributes["otpagent.callback.outcome"] == "applied"
    request = next(s for s in spans.named("POST") if s.context.span_id == callback.parent.span_id)  # type: ignore[union-attr]
    assert request.attributes["url.path"] == "/callbacks/twilio/SMS"
    assert request.attributes["http.response.status_code"] == 204

    # The fallback the callback caused is worked in the message's own trace.
    backup = spans.one("send BACKUP")
    steps = spans.named("process otpagent")
    assert len(steps) == 2
    assert {s.parent.span_id for s in steps if s.parent} == {enqueue.context.span_id}
    assert backup.context.trace_id == enqueue.context.trace_id
    # Never a credential, never the full number (Twilio's error text quoted it).
    everything = spans.texts()
    assert AUTH_TOKEN not in everything
    assert RECIPIENT not in everything and RECIPIENT[1:] not in everything


def test_a_callback_for_an_unknown_provider_id_has_a_span_without_a_link(
        tmp_path: Path, fake: FakeTwilio, spans: Spans) -> None:
    from otpagent.protocols import ProviderEvent

    config = agent_config(tmp_path, fake, tracing={"enabled": True})
    with IntelligentOTPAgent(config, tracer_provider=spans.provider) as agent:
        result = agent.record_provider_event(ProviderEvent(source="twilio", event_id="e1",
                                                           provider_message_id="SM" + "0" * 32,
                                                           status=Status.DELIVERED))

    callback = spans.one("twilio callback")
    assert callback.links == ()
    assert callback.attributes["otpagent.callback.outcome"] == result.outcome.value == "unknown"
    assert "messaging.message.id" not in callback.attributes
