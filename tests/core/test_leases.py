"""Short leases renewed by a heartbeat: the config rules, the heartbeat, a slow send that keeps
its lease, and a message whose outcome could not be recorded (it is not renewed for ever)."""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
import pytest

from otpagent import ConfigError, IntelligentOTPAgent, MessageRequest, Status
from otpagent.config import parse_config
from otpagent.heartbeat import LeaseHeartbeat, ReclaimGate
from tests.conftest import FakeClock, Outbox, agent_config, wait_for


def test_defaults_recover_a_dead_worker_within_seconds():
    d = parse_config({}, environ={}).dispatcher
    assert (d.lease_seconds, d.heartbeat_interval, d.channel_timeout_seconds, d.channel_timeout_grace_seconds) == \
        (6.0, 1.5, 15.0, 5.0)


def test_a_lease_may_be_shorter_than_a_provider_call_since_it_is_renewed():
    d = parse_config({"dispatcher": {"lease_seconds": 2, "channel_timeout_seconds": 30}}, environ={}).dispatcher
    assert d.heartbeat_interval == 0.5


@pytest.mark.parametrize(("dispatcher", "path", "says"), [
    ({"lease_seconds": 0.5}, "dispatcher.lease_seconds", "at least 1 s"),
    ({"lease_seconds": 6, "heartbeat_seconds": 3}, "dispatcher.heartbeat_seconds", "must leave slack within the lease"),
    ({"heartbeat_seconds": "often"}, "dispatcher.heartbeat_seconds", "positive number"),
    ({"heartbeat_seconds": 0}, "dispatcher.heartbeat_seconds", "positive number"),
    ({"channel_timeout_seconds": 0}, "dispatcher.channel_timeout_seconds", "positive"),
    ({"channel_timeout_grace_seconds": -1}, "dispatcher.channel_timeout_grace_seconds", "non-negative"),
])
def test_leases_too_short_for_the_machine_are_refused_naming_the_key(dispatcher, path, says):
    with pytest.raises(ConfigError) as exc:
        parse_config({"dispatcher": dispatcher}, environ={})
    assert exc.value.path == path and says in str(exc.value)


def test_the_heartbeat_renews_only_while_something_is_held_and_reports_a_late_beat(caplog):
    clock = FakeClock()
    renewals: list[float] = []
    holding = [False]

    def renew(now: float) -> int:
        renewals.append(now)
        return 3

    beat = LeaseHeartbeat(renew, lease_seconds=6.0, interval=1.5, holding=lambda: holding[0], clock=clock)
    assert beat.beat() == 0 and renewals == []
    holding[0] = True
    clock.advance(1.5)
    assert beat.beat() == 3 and renewals == [clock.now] and beat.last_renewal == clock.now
    clock.advance(1.5)
    beat.beat()
    assert "heartbeat_late" not in caplog.text

    clock.advance(6.5)  # the process was frozen longer than a lease
    beat.beat()
    assert "heartbeat_late" in caplog.text and "dispatcher.lease_seconds" in caplog.text


def test_a_send_longer_than_the_lease_keeps_its_lease_and_goes_out_once(tmp_path):
    """Two workers on one file; the send takes twice the lease. The other worker would take the
    message over at the first expiry if the heartbeat did not renew it."""
    outbox = Outbox(tmp_path / "outbox.jsonl")
    config = agent_config(
        tmp_path, channels={"sms": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(outbox.path),
                                    "latency_ms": 4000}},
        dispatcher={"workers": 2, "poll_interval_seconds": 0.05, "lease_seconds": 2.0, "heartbeat_seconds": 0.25})
    with IntelligentOTPAgent(config) as first, IntelligentOTPAgent(config) as second:
        message_id = first.send_message(MessageRequest(phone_number="+447700900124", content="slow", priority="HIGH"))
        first.start_processing()
        second.start_processing()
        leases: list[float] = []

        def sent() -> bool:
            message = first.storage.get_message(message_id)
            assert message is not None
            if message.status is Status.SENDING and message.lease_expires_at is not None:
                leases.append(message.lease_expires_at)
            return message.status is Status.SENT

        assert wait_for(sent, 30, interval=0.05)
        report = first.get_delivery_report(message_id)

    assert len(outbox.for_message(message_id)) == 1
    assert len(report.attempt_log) == 1
    assert leases and max(leases) > min(leases), "the lease was renewed while the provider call ran"


@pytest.mark.parametrize("writer", [True, False], ids=["outcome writer", "each worker thread"])
def test_a_message_whose_outcome_could_not_be_recorded_is_released_not_renewed_for_ever(
        make_agent, outbox, writer: bool) -> None:
    agent = make_agent(dispatcher={"workers": 2, "poll_interval_seconds": 0.05, "lease_seconds": 1.0})
    storage = agent.storage
    real_update, real_updates = storage.update_message, storage.update_messages
    failed: list[str] = []

    def lost(update: Any) -> bool:
        if update.status is Status.SENT and not failed:
            failed.append(update.message_id)
            return True
        return False

    def update_failing_once(update: Any, now: float, **kw: Any) -> bool:
        if lost(update):
            raise sqlite3.OperationalError("disk I/O error")
        return real_update(update, now, **kw)

    def updates_failing_once(writes: Any) -> list[Any]:
        return [sqlite3.OperationalError("disk I/O error") if lost(w.update) else real_updates([w])[0]
                for w in writes]

    storage.update_message = update_failing_once  # type: ignore[method-assign]
    storage.update_messages = updates_failing_once  # type: ignore[method-assign]
    if not writer:  # as with a backend that cannot record outcomes in batches
        agent.dispatcher.capabilities = attrs.evolve(agent.dispatcher.capabilities, batch_updates=None)
    message_id = agent.send_message(MessageRequest(phone_number="+447700900124", content="x", priority="HIGH"))
    agent.start_processing()

    assert (agent.dispatcher._writer is not None) is writer
    assert wait_for(lambda: agent.get_delivery_report(message_id).status is Status.SENT, 30)
    assert failed == [message_id]
    assert len(outbox.for_message(message_id)) == 2, "sent, outcome lost, released, sent again (as after a crash)"
    assert not agent.dispatcher.leases.has_orphans


def test_after_the_store_was_out_of_reach_expired_leases_wait_one_lease() -> None:
    gate = ReclaimGate(6.0, gap=3.0)

    gate.contact(100.0, 100.1)
    gate.contact(101.0, 101.2)
    assert gate.may_reclaim(101.3), "regular contact: a dead worker's lease is taken over at once"

    gate.contact(101.5, 105.0)  # a call that hung 3.5 s: the store was away
    assert not gate.may_reclaim(110.9), "live workers get one lease to renew first"
    assert gate.may_reclaim(111.0)

    gate.contact(120.0, 120.1)  # 15 s without any contact (the claim loop was stuck)
    assert not gate.may_reclaim(126.0) and gate.may_reclaim(126.1)
