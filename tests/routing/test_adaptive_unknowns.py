"""Adaptive routing with little evidence: OTPs on channels not known yet, silent providers, recovery."""

from __future__ import annotations

import pytest

from otpagent.model import MessageType, Priority, Status
from otpagent.protocols import RouteOutcome
from otpagent.routing.adaptive_evidence import Evidence, Learning
from tests.conftest import FakeClock
from tests.routing.test_adaptive_v2 import firsts, healthy, info, make, report, send

OTP = {"message_type": MessageType.OTP, "priority": Priority.HIGH}


def test_an_otp_does_not_go_first_to_a_cheap_channel_not_known_yet(storage):
    strategy = make(storage, FakeClock())
    chans = [info("wa", kind="whatsapp", cost=0.005), info("sms", kind="sms", cost=0.0079)]
    assert firsts(strategy, chans, n=200, **OTP) == {"sms": 200}, "the priority map (SMS first) until known"
    assert firsts(strategy, chans, n=200)["wa"] > 100, "other messages still try the cheap channel"


def test_accepted_sends_alone_never_make_a_channel_in_time_for_otps(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    for i in range(100):  # accepted, no report yet: counted as delivered for price per delivery only
        send(strategy, "wa", f"w{i}")
        clock.advance(0.5)
    belief = strategy.belief("wa")
    assert belief.mean > 0.9
    assert belief.steady == (0.0, 0.0), "the in-time test's counts come from reports only"
    chans = [info("wa", kind="whatsapp", cost=0.005), info("sms", kind="sms", cost=0.0079)]
    assert firsts(strategy, chans, n=100, **OTP) == {"sms": 100}


def test_a_channel_known_to_be_in_time_goes_before_one_not_known_yet(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    for i in range(60):  # delivered in 3 s, reported at once, to the recipients' country
        sent = clock()
        strategy.observe(RouteOutcome(message_id=f"w{i}", channel="wa", priority=Priority.HIGH, status=Status.SENT,
                                      country="GB"))
        clock.advance(3)
        strategy.observe(RouteOutcome(message_id=f"w{i}", channel="wa", priority=Priority.HIGH, country="GB",
                                      status=Status.DELIVERED, callback=True, accepted_at=sent,
                                      time_to_deliver_ms=3000.0))
    chans = [info("wa", kind="whatsapp", cost=0.005), info("sms", kind="sms", cost=0.0079)]
    assert firsts(strategy, chans, n=200, **OTP)["wa"] == 200


def test_a_provider_that_goes_silent_is_seen_before_each_send_is_overdue(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    for i in range(40):  # reports after 1 to 10 s: the usual report delay (95th percentile) is ~10 s
        sent = clock()
        send(strategy, "a", f"a{i}")
        clock.advance(1 + i % 10)
        report(strategy, "a", f"a{i}", sent)
    before = strategy.belief("a").mean
    for i in range(20):  # then it swallows sends: 5 a second, no report
        send(strategy, "a", f"gone{i}")
        clock.advance(0.2)
    clock.advance(5)  # the oldest is 9 s old: none is past the usual delay, but ~10 reports are owed
    assert strategy.belief("a").mean < 0.5 < before
    sent = clock()
    send(strategy, "a", "new")
    clock.advance(1)
    report(strategy, "a", "new", sent)  # a report on a newer send: not silent after all
    assert strategy.belief("a").mean > 0.5


def test_a_write_off_is_not_something_heard_from_the_channel():
    learning = Learning()
    e = Evidence()
    t = 1000.0
    for _ in range(10):
        e = e.sent(t, 0.01, learning).reported(t + 2, True, t, 2.0, 0.0, learning)
        t += 3
    e = e.sent(t, 0.01, learning)
    last = e.seen
    later = e.aged(t + 600, learning)._written_off(t + 600, learning)  # no report: a failure now
    assert later.losses > e.losses
    assert later.seen == last, "an abandoned channel stays stale (so it is probed)"


def test_a_probe_delivered_after_a_long_silence_also_wipes_the_sends_pending_from_before(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    healthy(strategy, clock, "a", 40, delay=20.0)  # reports after 20 s: overdue from ~30 s, written off at ~90 s
    for i in range(30):  # a black hole: sends accepted, never reported
        send(strategy, "a", f"gone{i}")
        clock.advance(0.2)
    clock.advance(60)
    assert strategy.belief("a").mean < 0.3, "its overdue sends count as failures"
    sent = clock()
    send(strategy, "a", "probe")
    clock.advance(20)
    report(strategy, "a", "probe", sent)  # it has recovered
    assert strategy.belief("a").mean > 0.4, "the old record and the sends pending from before are mostly wiped"
    clock.advance(60)
    send(strategy, "a", "later")  # the old sends are written off now: only what is left of them counts
    assert strategy.belief("a").mean > 0.4


def test_a_late_report_counts_fully_in_the_long_memory_and_little_in_the_fast_one():
    learning = Learning()
    e = Evidence()
    for i in range(30):
        e = e.sent(1000.0 + i, 0.01, learning)
    e = e.reported(1040.0, True, 1029.0, 5.0, 0.0, learning)  # the newest first
    e = e.reported(1041.0, False, 1000.0, None, 0.0, learning)  # then one about a send 29 sends older
    assert e.losses == pytest.approx(learning.decay ** 29, rel=0.1)
    assert e.steady_losses == pytest.approx(0.99 ** 29, rel=0.1)
