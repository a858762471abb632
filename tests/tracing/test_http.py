"""The service continues its callers' W3C trace context, through the queue to the provider call."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.trace import SpanKind

from otpagent import IntelligentOTPAgent
from tests.conftest import wait_for
from tests.service.conftest import LiveServer, service_config
from tests.tracing.conftest import Spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def served(tmp_path: Path, spans: Spans) -> tuple[IntelligentOTPAgent, LiveServer]:
    config = {**service_config(tmp_path), "tracing": {"enabled": True}}
    agent = IntelligentOTPAgent(config, tracer_provider=spans.provider)
    return agent, LiveServer(agent).__enter__()


def test_an_incoming_traceparent_is_continued_through_the_queue_to_the_provider(tmp_path: Path,
                                                                                spans: Spans) -> None:
    agent, live = served(tmp_path, spans)
    try:
        with live.client() as api:
            response = api.post("/v1/messages", json={"phone_number": "+447700900123", "content": "Hello"},
                                headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                                         "tracestate": "caller=1"})
        assert response.status_code == 202
        assert wait_for(lambda: len(spans.named("process otpagent")) == 1, timeout=20)
    finally:
        live.__exit__(None, None, None)
        agent.close()

    server = next(s for s in spans.named("POST") if s.attributes["url.path"] == "/v1/messages")
    assert server.kind is SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert server.parent.is_remote
    assert server.attributes["http.response.status_code"] == 202
    assert server.context.trace_state.get("caller") == "1"
    enqueue = spans.one("send_bulk_messages otpagent")
    assert enqueue.parent is not None and enqueue.parent.span_id == server.context.span_id
    process = spans.one("process otpagent")
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id
    call = spans.one("send whatsapp")  # MEDIUM priority: WhatsApp first
    assert {f"{s.context.trace_id:032x}" for s in (enqueue, process, call)} == {TRACE_ID}


def test_a_request_without_trace_context_starts_a_trace_of_its_own(tmp_path: Path, spans: Spans) -> None:
    agent, live = served(tmp_path, spans)
    try:
        with live.client() as api:
            assert api.post("/v1/otp", json={"phone_number": "+447700900123"}).status_code == 202
            assert api.get("/healthz").status_code == 200
            assert api.get("/metrics").status_code == 200
    finally:
        live.__exit__(None, None, None)
        agent.close()

    server = next(s for s in spans.named("POST") if s.attributes["url.path"] == "/v1/otp")
    assert server.parent is None
    enqueue = spans.one("send_otp otpagent")
    assert enqueue.parent is not None and enqueue.parent.span_id == server.context.span_id
    assert spans.named("GET") == []  # probes and scrapes are not traced
