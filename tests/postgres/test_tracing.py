"""On PostgreSQL, the worker that claims a message continues the trace another agent started."""

from __future__ import annotations

from pathlib import Path

from otpagent import IntelligentOTPAgent
from tests.conftest import agent_config
from tests.contract.backends import PG_DSN
from tests.tracing.conftest import Spans


def test_a_message_queued_by_one_agent_is_worked_in_its_trace_by_another(pg_schema: str, tmp_path: Path) -> None:
    spans = Spans()
    storage = {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema}
    config = agent_config(tmp_path, storage=storage, tracing={"enabled": True})
    try:
        with IntelligentOTPAgent(config, tracer_provider=spans.provider) as api_node:  # queues, never works
            message_id = api_node.send_otp("+447700900123")
        with IntelligentOTPAgent(config, tracer_provider=spans.provider) as worker_node:
            worker_node.start_processing()
            assert worker_node.wait_until_idle(20)
            report = worker_node.get_delivery_report(message_id)
    finally:
        spans.provider.shutdown()

    assert report is not None and report.status.value == "sent"
    enqueue, process = spans.one("send_otp otpagent"), spans.one("process otpagent")
    assert process.context.trace_id == enqueue.context.trace_id
    assert process.parent is not None and process.parent.span_id == enqueue.context.span_id
    assert process.attributes["messaging.client.id"] == worker_node.dispatcher.worker_id
    assert spans.one("send sms").attributes["otpagent.provider.message_id"] == report.provider_message_id
