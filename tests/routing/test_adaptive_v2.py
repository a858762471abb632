"""Adaptive routing v2: reports, pending sends, send order, probes, prices, delays and config."""

from __future__ import annotations

import collections
import json

import pytest

from otpagent import ConfigError
from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import ChannelInfo, ChannelStats, RouteOutcome
from otpagent.routing.adaptive import AdaptiveSettings, AdaptiveStrategy, create_adaptive_strategy
from otpagent.routing.adaptive_delays import DelayHistogram
from otpagent.routing.adaptive_evidence import Evidence, Learning
from otpagent.storage.sqlite import SqliteStorage
from tests.conftest import FakeClock


def make(storage, clock, **kw):
    return AdaptiveStrategy(storage, AdaptiveSettings(sync_interval_seconds=0, seed=3, **kw), clock=clock)


def info(name, kind="sms", cost=0.01):
    return ChannelInfo(name=name, kind=kind, cost=cost, stats=ChannelStats())


def envelope(message_type=MessageType.NOTIFICATION, priority=Priority.MEDIUM, expires_at=None):
    return Envelope(message_id="m", message_type=message_type, priority=priority, body="hi",
                    phone_number="+447700900123", expires_at=expires_at)


def send(strategy, channel, message_id, cost=0.0):
    strategy.observe(RouteOutcome(message_id=message_id, channel=channel, priority=Priority.MEDIUM,
                                  status=Status.SENT, cost=cost))


def report(strategy, channel, message_id, sent_at, *, delivered=True, cost=0.0, status=None):
    status = status or (Status.DELIVERED if delivered else Status.UNDELIVERED)
    ttd = (strategy.clock() - sent_at) * 1000 if status in (Status.DELIVERED, Status.READ) else None
    strategy.observe(RouteOutcome(message_id=message_id, channel=channel, priority=Priority.MEDIUM, status=status,
                                  callback=True, accepted_at=sent_at, time_to_deliver_ms=ttd, cost=cost))


def healthy(strategy, clock, channel, n, delay=5.0, cost=0.0, start=0):
    """``n`` sends a second apart, each reported delivered ``delay`` seconds later."""
    for i in range(start, start + n):
        sent = clock()
        send(strategy, channel, f"{channel}{i}", cost=cost)
        clock.advance(delay)
        report(strategy, channel, f"{channel}{i}", sent, cost=cost)
        clock.advance(1 - delay if delay < 1 else 0)


def firsts(strategy, chans, n=400, **kw):
    return collections.Counter(strategy.plan(envelope(**kw), chans)[0] for _ in range(n))


def test_overdue_sends_of_a_channel_that_reports_count_as_failures(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    healthy(strategy, clock, "a", 30)
    before = strategy.belief("a").mean
    for i in range(20):  # accepted, then nothing: no report
        send(strategy, "a", f"silent{i}")
    assert strategy.belief("a").mean == pytest.approx(before, abs=0.02), "not overdue yet"
    clock.advance(60)
    assert strategy.belief("a").mean < 0.5 < before


def test_a_channel_that_never_reports_is_not_suspected_and_its_sends_count(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    for i in range(30):
        send(strategy, "quiet", f"q{i}")
        clock.advance(1)
    clock.advance(3600)
    send(strategy, "quiet", "last")
    assert strategy.belief("quiet").mean > 0.8


def test_a_late_report_about_an_old_send_counts_less_than_a_fresh_one(tmp_path):
    """The same sends and reports; only the order the reports arrive in differs."""

    def belief_after(newest_reported_first: bool) -> float:
        clock = FakeClock()
        store = SqliteStorage(tmp_path / f"{newest_reported_first}.db")
        try:
            strategy = make(store, clock)
            # It reports on its sends, within 30 s: the reports below are not overdue (a silence).
            healthy(strategy, clock, "a", 10, delay=30.0, start=100)
            sends = []
            for i in range(20):
                sends.append(clock())
                send(strategy, "a", f"m{i}")
                clock.advance(1)
            old = [lambda i=i: report(strategy, "a", f"m{i}", sends[i]) for i in range(5)]
            newest = [lambda: report(strategy, "a", "m19", sends[19], delivered=False)]
            for step in (newest + old if newest_reported_first else old + newest):
                step()
            return strategy.belief("a").mean
        finally:
            store.close()

    assert belief_after(newest_reported_first=True) < belief_after(newest_reported_first=False)


def test_a_read_receipt_after_the_delivery_is_not_a_second_success(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    sent = clock()
    send(strategy, "wa", "m1")
    clock.advance(2)
    report(strategy, "wa", "m1", sent)
    once = strategy.belief("wa").mean
    report(strategy, "wa", "m1", sent, status=Status.READ)
    assert strategy.belief("wa").mean == once


def test_an_abandoned_channel_is_probed_at_a_bounded_rate_and_wins_back_when_it_recovers(storage):
    clock = FakeClock()
    strategy = make(storage, clock, explore_share=0.5, probe_after_seconds=15)
    chans = [info("cheap", cost=0.005), info("dear", cost=0.008)]
    healthy(strategy, clock, "dear", 40)
    for i in range(40):  # cheap fails: every report says undelivered
        sent = clock()
        send(strategy, "cheap", f"c{i}")
        clock.advance(1)
        report(strategy, "cheap", f"c{i}", sent, delivered=False)
    clock.advance(20)
    probes = [strategy.plan(envelope(), chans)[0] for _ in range(200)]
    assert 1 <= probes.count("cheap") <= 3, "one probe per channel per probe_after_seconds (and rare sampling)"
    sent = clock()
    send(strategy, "cheap", "probe")
    clock.advance(5)
    report(strategy, "cheap", "probe", sent)  # the channel has recovered
    assert strategy.belief("cheap").mean > 0.25, "a surprising success after silence wipes most of the bad record"


def test_the_billed_price_reported_by_the_provider_changes_the_order(storage):
    clock = FakeClock()
    strategy = make(storage, clock, explore_share=0)
    chans = [info("a", cost=0.005), info("b", cost=0.008)]
    healthy(strategy, clock, "a", 30, cost=0.005)
    healthy(strategy, clock, "b", 30, cost=0.008, start=100)
    assert firsts(strategy, chans)["a"] > 360
    healthy(strategy, clock, "a", 30, cost=0.005, start=200)
    for i in range(30):  # the provider's reports now bill 0.012 for what config says costs 0.005
        sent = clock()
        send(strategy, "a", f"p{i}", cost=0.005)
        clock.advance(1)
        report(strategy, "a", f"p{i}", sent, cost=0.012)
    assert firsts(strategy, chans)["b"] > 360


def test_critical_ignores_price_and_patience(storage):
    clock = FakeClock()
    strategy = make(storage, clock)
    healthy(strategy, clock, "reliable", 40, delay=60.0)
    for i in range(40):
        sent = clock()
        send(strategy, "flaky", f"f{i}")
        clock.advance(1)
        report(strategy, "flaky", f"f{i}", sent, delivered=i % 2 == 0)
    chans = [info("reliable", cost=0.02), info("flaky", cost=0.001)]
    assert firsts(strategy, chans, priority=Priority.CRITICAL)["reliable"] > 340


def test_learning_is_shared_through_storage(storage):
    clock = FakeClock()
    healthy(make(storage, clock), clock, "a", 20, delay=8.0)
    other = make(storage, clock)
    belief = other.belief("a")
    assert belief.mean > 0.8 and belief.ttd_seconds == pytest.approx(8.0, abs=2.0)


def test_evidence_survives_json_and_garbage_becomes_empty():
    learning = Learning()
    e = Evidence().sent(100.0, 0.01, learning).reported(105.0, True, 100.0, 5.0, 0.02, learning)
    assert Evidence.from_json(e.to_json()) == e
    assert Evidence.from_json('{"a": 1, "b": 2, "t": 0}') == Evidence(), "an earlier version's posterior"
    assert Evidence.from_json("not json") == Evidence()
    assert Evidence.from_json(json.dumps({**json.loads(e.to_json()), "wins": "NaN"})) == Evidence()


def test_delay_histogram_quantiles_and_shares():
    h = DelayHistogram()
    for seconds in (1, 2, 3, 4, 5, 6, 7, 8, 9, 100):
        h = h.added(seconds, keep=1.0)
    assert h.quantile(0.5) == pytest.approx(4.0, abs=1.0)
    assert h.quantile(0.95) > 60
    assert h.share_within(10) == pytest.approx(0.9)
    assert DelayHistogram().quantile(0.5) is None and DelayHistogram().share_within(5) is None


@pytest.mark.parametrize(("key", "value", "words"), [
    ("otp_deliver_within_seconds", 0, "must be positive"),
    ("otp_deliver_within_seconds", "30", "must be a number"),
    ("explore_share", 0.9, "must be from 0 to 0.5"),
    ("decay", 1.5, "must be in (0, 1]"),
    ("probe_after_seconds", True, "must be a number"),
    ("seed", 1.5, "must be an integer"),
    ("otp_latency_share", 0.5, "replaced by otp_deliver_within_seconds"),
    ("latency_smoothing", 0.2, "no longer used"),
    ("decai", 0.9, "did you mean 'decay'?"),
])
def test_bad_settings_are_refused_naming_the_key(make_agent, key, value, words):
    with pytest.raises(ConfigError) as exc:
        make_agent(routing={"strategy": "adaptive", key: value})
    assert exc.value.path == f"routing.{key}"
    assert words in str(exc.value)


def test_good_settings_are_taken(make_agent):
    agent = make_agent(routing={"strategy": "adaptive", "otp_deliver_within_seconds": 20, "explore_share": 0})
    assert agent.strategy.settings.otp_deliver_within_seconds == 20.0
    assert agent.strategy.settings.explore_share == 0.0
    assert callable(create_adaptive_strategy)
