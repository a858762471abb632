"""One trace per message: enqueue -> (the queue) -> claim, routing, provider call; no secrets in it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from otpagent import IntelligentOTPAgent, MessageRequest, Priority
from tests.conftest import Outbox, agent_config
from tests.tracing.conftest import Spans

PHONE = "+447700900123"


def traced_agent(tmp_path: Path, spans: Spans, **overrides: Any) -> IntelligentOTPAgent:
    return IntelligentOTPAgent(agent_config(tmp_path, tracing={"enabled": True}, **overrides),
                               tracer_provider=spans.provider)


def run(agent: IntelligentOTPAgent) -> None:
    agent.start_processing()
    assert agent.wait_until_idle(20), "the agent did not go idle"
    agent.stop_processing()


def test_a_message_is_one_trace_from_enqueue_through_claim_and_routing_to_the_provider_call(
        tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        message_id = agent.send_message(MessageRequest(phone_number=PHONE, message_type="alert", content="Hello",
                                                       priority=Priority.HIGH))
        run(agent)
        report = agent.get_delivery_report(message_id)

    enqueue = spans.one("send_message otpagent")
    process = spans.one("process otpagent")
    assert enqueue.kind is SpanKind.PRODUCER and enqueue.parent is None
    assert enqueue.attributes["messaging.system"] == "otpagent"
    assert enqueue.attributes["messaging.operation.type"] == "send"
    assert enqueue.attributes["messaging.message.id"] == message_id
    # Across the queue: the worker's span continues the enqueue's trace, and links to it.
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == enqueue.context.trace_id
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id
    assert [link.context.span_id for link in process.links] == [enqueue.context.span_id]
    assert process.attributes["messaging.message.id"] == message_id
    assert process.attributes["messaging.client.id"] == agent.dispatcher.worker_id
    assert process.attributes["otpagent.step"] == "sent"
    assert [e.name for e in process.events] == ["otpagent.sent"]

    claim, route, call = (spans.one(n) for n in ("receive otpagent", "otpagent route", "send sms"))
    assert {s.context.span_id for s in spans.children(process)} == {claim.context.span_id, route.context.span_id,
                                                                   call.context.span_id}
    assert claim.attributes["messaging.operation.type"] == "receive"
    assert claim.attributes["messaging.batch.message_count"] == 1
    assert process.start_time == claim.start_time <= claim.end_time <= route.start_time <= call.start_time
    assert route.attributes["otpagent.route.chosen"] == "sms"  # HIGH -> SMS first (priority strategy)
    assert route.attributes["otpagent.route"][0] == "sms"
    assert route.attributes["otpagent.routing.strategy"] == "priority"
    assert route.attributes["otpagent.route.decided_by"] == "strategy"
    assert "email: cannot reach this recipient (email needs an email address)" in \
        route.attributes["otpagent.route.excluded"]
    assert call.kind is SpanKind.CLIENT
    assert call.attributes["otpagent.channel"] == "sms"
    assert call.attributes["otpagent.outcome"] == "accepted"
    assert report is not None
    assert call.attributes["otpagent.provider.message_id"] == report.provider_message_id


def test_an_otp_trace_holds_neither_the_code_nor_the_full_number(tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        message_id = agent.send_otp(PHONE)
        run(agent)

    (sent,) = Outbox(tmp_path / "outbox.jsonl").for_message(message_id)
    (code,) = re.findall(r"\b\d{6}\b", sent["body"])
    everything = spans.texts()
    assert code not in everything
    assert PHONE not in everything and PHONE[1:] not in everything
    assert spans.one("send sms").attributes["otpagent.recipient"] == "+44********23"
    enqueue = spans.one("send_otp otpagent")
    assert spans.one("process otpagent").parent.span_id == enqueue.context.span_id  # type: ignore[union-attr]


def test_a_request_naming_its_channels_says_so_in_the_routing_span(tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        agent.send_message(MessageRequest(phone_number=PHONE, content="Hi", channels=("whatsapp", "sms")))
        run(agent)

    route = spans.one("otpagent route")
    assert route.attributes["otpagent.route"] == ("whatsapp", "sms")
    assert route.attributes["otpagent.route.decided_by"] == "request.channels"
    assert "voice: not in the request's channel list" in route.attributes["otpagent.route.excluded"]


def test_each_message_of_a_bulk_send_continues_the_one_enqueue_span(tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        ids = agent.send_bulk_messages([{"phone_number": PHONE, "content": f"m{i}"} for i in range(3)])
        run(agent)

    enqueue = spans.one("send_bulk_messages otpagent")
    assert enqueue.attributes["messaging.batch.message_count"] == 3
    processed = spans.named("process otpagent")
    assert sorted(s.attributes["messaging.message.id"] for s in processed) == sorted(ids)
    assert {s.parent.span_id for s in processed if s.parent} == {enqueue.context.span_id}


def test_a_failed_send_and_its_fallback_are_recorded_on_the_trace(tmp_path: Path, spans: Spans) -> None:
    channels = {"BROKEN": {"plugin": "console", "kind": "sms", "quiet": True, "fail_rate": 1, "fail_mode": "permanent",
                           "outbox": str(tmp_path / "broken.jsonl")},
                "BACKUP": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(tmp_path / "out.jsonl")}}
    with traced_agent(tmp_path, spans, channels=channels) as agent:
        message_id = agent.send_message(MessageRequest(phone_number=PHONE, content="Hi",
                                                       channels=("BROKEN", "BACKUP")))
        run(agent)

    failed, sent = spans.one("send BROKEN"), spans.one("send BACKUP")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["otpagent.outcome"] == "permanent"
    assert sent.attributes["otpagent.outcome"] == "accepted"
    steps = [e for s in spans.named("process otpagent") for e in s.events]
    fallback = next(e for e in steps if e.name == "otpagent.fallback")
    assert fallback.attributes["otpagent.from"] == "BROKEN" and fallback.attributes["otpagent.to"] == "BACKUP"
    assert {s.attributes["messaging.message.id"] for s in spans.named("process otpagent")} == {message_id}
    assert len({s.context.trace_id for s in spans.all()}) == 1


def test_the_trace_context_is_stored_with_the_message_and_survives_a_restart(tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        message_id = agent.send_message({"phone_number": PHONE, "content": "later"})
        stored = agent.storage.get_message(message_id)
    enqueue = spans.one("send_message otpagent")
    assert stored is not None and stored.trace_context is not None
    assert stored.trace_context["traceparent"].startswith(
        f"00-{enqueue.context.trace_id:032x}-{enqueue.context.span_id:016x}-")

    with traced_agent(tmp_path, spans) as restarted:  # another process would read the same row
        run(restarted)

    process = spans.one("process otpagent")
    assert process.context.trace_id == enqueue.context.trace_id
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id


def test_with_tracing_off_no_span_is_made_and_no_context_stored(tmp_path: Path, spans: Spans) -> None:
    config = agent_config(tmp_path, tracing={"enabled": False})
    with IntelligentOTPAgent(config, tracer_provider=spans.provider) as agent:
        message_id = agent.send_message({"phone_number": PHONE, "content": "quiet"})
        run(agent)
        stored = agent.storage.get_message(message_id)

    assert agent.tracing.enabled is False
    assert stored is not None and stored.trace_context is None
    assert spans.all() == []


def test_a_rejected_enqueue_marks_its_span_failed_without_quoting_the_input(tmp_path: Path, spans: Spans) -> None:
    with traced_agent(tmp_path, spans) as agent:
        try:
            agent.send_message({"phone_number": "+44 7700 900123", "content": ""})
        except Exception as exc:
            assert type(exc).__name__ == "InvalidRequest"

    enqueue = spans.one("send_message otpagent")
    assert enqueue.status.status_code is StatusCode.ERROR
    assert enqueue.attributes["error.type"] == "InvalidRequest"
    assert "900123" not in spans.texts()


def test_messages_loaded_from_a_file_continue_the_load_span(tmp_path: Path, spans: Spans) -> None:
    file = tmp_path / "messages.json"
    file.write_text(json.dumps({"messages": [{"phone_number": PHONE, "content": "a"},
                                             {"phone_number": PHONE, "message_type": "otp"}]}))
    with traced_agent(tmp_path, spans) as agent:
        assert agent.load_messages_from_json(file) == 2
        run(agent)

    load = spans.one("load_messages_from_json otpagent")
    assert load.attributes["messaging.batch.message_count"] == 2
    processed = spans.named("process otpagent")
    assert len(processed) == 2
    assert {s.parent.span_id for s in processed if s.parent} == {load.context.span_id}
    assert {s.attributes["otpagent.message.type"] for s in processed} == {"notification", "otp"}
