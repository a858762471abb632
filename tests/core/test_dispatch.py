"""Dispatch behaviour: priority order, scheduling, retries, fallback, circuits, expiry, cancel."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from otpagent import MessageRequest, Priority, Status
from otpagent.backoff import backoff_delay
from tests.conftest import FakeClock, console_channels, wait_for

PHONE = "+447700900124"


def _request(priority: Priority, content: str, **kw) -> MessageRequest:
    return MessageRequest(phone_number=PHONE, message_type="alert", content=content, priority=priority, **kw)


def test_due_messages_go_out_in_strict_priority_order(make_agent, outbox, tmp_path):
    sms_only = {"sms": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(outbox.path)}}
    agent = make_agent(channels=sms_only, dispatcher={"workers": 1, "poll_interval_seconds": 0.05})
    order = [Priority.LOW, Priority.MEDIUM, Priority.CRITICAL, Priority.HIGH, Priority.LOW, Priority.CRITICAL]
    agent.send_bulk_messages([_request(p, f"{i}:{p.name}") for i, p in enumerate(order)])

    agent.start_processing()
    assert agent.wait_until_idle(10)

    sent = [e["priority"] for e in outbox.entries()]
    assert sent == ["CRITICAL", "CRITICAL", "HIGH", "MEDIUM", "LOW", "LOW"]
    bodies = [e["body"] for e in outbox.entries()]
    assert bodies[0].startswith("2:") and bodies[1].startswith("5:"), "same priority keeps arrival order"


def test_priority_picks_the_default_channel_kind(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    ids = {
        p: agent.send_message(MessageRequest(phone_number=PHONE, email="ops@example.com", message_type="alert",
                                             content="x", priority=p))
        for p in Priority
    }
    assert agent.wait_until_idle(10)
    kinds = {p: outbox.for_message(i)[0]["kind"] for p, i in ids.items()}
    assert kinds == {Priority.CRITICAL: "voice", Priority.HIGH: "sms", Priority.MEDIUM: "whatsapp",
                     Priority.LOW: "email"}


def test_without_an_email_address_low_priority_skips_the_email_channel(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    message_id = agent.send_message(_request(Priority.LOW, "no email here"))
    assert agent.wait_until_idle(10)
    report = agent.get_delivery_report(message_id)
    assert "email" not in report.route
    assert report.channel == "whatsapp"


def test_scheduled_message_is_not_sent_before_its_time(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    at = datetime.now(UTC) + timedelta(seconds=0.6)
    message_id = agent.send_message(_request(Priority.HIGH, "later", scheduled_for=at))

    assert agent.get_delivery_report(message_id).status is Status.SCHEDULED
    assert wait_for(lambda: outbox.for_message(message_id), timeout=5)
    assert outbox.for_message(message_id)[0]["at"] >= at.timestamp()


def test_transient_failures_are_retried_with_backoff_then_succeed(make_agent, outbox):
    channels = console_channels(outbox.path, flaky={"kind": "sms", "fail_first": 2})
    agent = make_agent(channels={"flaky": channels["flaky"]})
    agent.start_processing()
    message_id = agent.send_message(_request(Priority.HIGH, "retry me"))
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report.status is Status.SENT
    assert [a.outcome.value for a in report.attempt_log] == ["transient", "transient", "accepted"]
    assert [e.type for e in report.history].count("retrying") == 2
    assert report.attempt_log[0].error_code == "console-503"


def test_exhausted_retries_fall_back_to_the_next_channel(make_agent, outbox):
    base = {"plugin": "console", "quiet": True, "outbox": str(outbox.path), "kind": "sms"}
    agent = make_agent(channels={
        "primary": {**base, "weight": 2, "fail_rate": 1.0},
        "backup": {**base},
    })
    agent.start_processing()
    message_id = agent.send_message(_request(Priority.HIGH, "fall back"))
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report.status is Status.SENT and report.channel == "backup"
    assert [a.channel for a in report.attempt_log] == ["primary", "primary", "primary", "backup"]
    assert "fallback" in [e.type for e in report.history]


def test_permanent_failure_falls_back_at_once(make_agent, outbox):
    base = {"plugin": "console", "quiet": True, "outbox": str(outbox.path), "kind": "sms"}
    agent = make_agent(channels={
        "primary": {**base, "weight": 2, "fail_rate": 1.0, "fail_mode": "permanent"},
        "backup": {**base},
    })
    agent.start_processing()
    message_id = agent.send_message(_request(Priority.HIGH, "fall back now"))
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert [a.channel for a in report.attempt_log] == ["primary", "backup"]
    assert agent.get_metrics()["channels"]["primary"]["circuit"] == "closed"


def test_every_channel_failing_ends_failed_with_the_reason(make_agent, outbox):
    base = {"plugin": "console", "quiet": True, "kind": "sms", "fail_rate": 1.0, "fail_mode": "permanent"}
    agent = make_agent(channels={"a": base, "b": base})
    agent.start_processing()
    message_id = agent.send_message(_request(Priority.HIGH, "doomed"))
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report.status is Status.FAILED
    assert "simulated permanent failure" in report.last_error
    assert len(report.attempt_log) == 2


def test_otp_that_cannot_be_sent_before_expiry_ends_expired_and_is_never_sent(make_agent, outbox):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"ttl_seconds": 60})
    message_id = agent.send_otp(PHONE)
    clock.advance(61)

    agent.start_processing()
    assert agent.wait_until_idle(10)

    report = agent.get_delivery_report(message_id)
    assert report.status is Status.EXPIRED
    assert outbox.for_message(message_id) == []
    assert agent.storage.get_message(message_id).secret is None


def test_cancel_stops_a_message_that_was_not_sent_yet(make_agent, outbox):
    agent = make_agent()
    later = datetime.now(UTC) + timedelta(hours=1)
    message_id = agent.send_message(_request(Priority.HIGH, "cancel me", scheduled_for=later))

    assert agent.cancel_message(message_id) is True
    assert agent.cancel_message(message_id) is False
    assert agent.get_delivery_report(message_id).status is Status.CANCELLED


def test_channel_rate_limit_spaces_sends(make_agent, outbox):
    base = {"plugin": "console", "quiet": True, "outbox": str(outbox.path), "kind": "sms"}
    agent = make_agent(channels={"sms": {**base, "rate_limit": {"per_second": 20, "burst": 1}}})
    ids = agent.send_bulk_messages([_request(Priority.HIGH, f"m{i}") for i in range(10)])
    agent.start_processing()
    assert agent.wait_until_idle(30)

    # What the limiter promises (the slot it granted each send), not when a loaded machine sent.
    slots = sorted(e.data["rate_limit_slot"] for i in ids for e in agent.storage.get_events(i)
                   if e.type == "attempt")
    assert len(outbox.entries()) == len(slots) == 10
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 1 / 20 - 1e-5, "20/s with burst 1: one slot every 50 ms at most (slots kept to the µs)"


def test_stop_processing_finishes_in_flight_sends(make_agent, outbox):
    base = {"plugin": "console", "quiet": True, "outbox": str(outbox.path), "kind": "sms", "latency_ms": 200}
    agent = make_agent(channels={"slow": base}, dispatcher={"workers": 4, "poll_interval_seconds": 0.05})
    ids = agent.send_bulk_messages([_request(Priority.HIGH, f"m{i}") for i in range(4)])
    agent.start_processing()
    assert wait_for(lambda: agent.dispatcher.inflight == 4, timeout=5)

    agent.stop_processing()

    statuses = {agent.get_delivery_report(i).status for i in ids}
    assert statuses == {Status.SENT}
    assert not agent.is_running


def test_backoff_is_exponential_with_full_jitter():
    import random

    rng = random.Random(7)
    samples = [backoff_delay(n, 1.0, 300.0, rng) for n in (1, 2, 3, 10) for _ in range(200)]
    firsts, seconds, thirds, tenths = samples[:200], samples[200:400], samples[400:600], samples[600:]
    assert max(firsts) <= 1.0 and max(seconds) <= 2.0 and max(thirds) <= 4.0 and max(tenths) <= 300.0
    assert min(samples) >= 0.0
    assert max(thirds) > 2.0, "full jitter spreads over the whole window"
