"""Routing strategies: the fixed map, load balancing, cheapest, most-reliable and adaptive."""

from __future__ import annotations

import collections
import random

import pytest

from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import ChannelInfo, ChannelStats, PluginContext, RouteOutcome
from otpagent.routing.adaptive import AdaptiveSettings, AdaptiveStrategy
from otpagent.routing.priority import PriorityStrategy
from otpagent.routing.simple import CheapestStrategy, MostReliableStrategy
from tests.conftest import FakeClock


def envelope(priority=Priority.HIGH, message_type=MessageType.ALERT, expires_at=None, phone="+447700900123"):
    return Envelope(message_id="m", message_type=message_type, priority=priority, body="hi",
                    phone_number=phone, email="a@example.com", expires_at=expires_at)


def info(name, kind, cost=0.01, weight=1.0, attempts=0, accepted=0):
    return ChannelInfo(name=name, kind=kind, cost=cost, weight=weight,
                       stats=ChannelStats(attempts=attempts, accepted=accepted))


CHANNELS = [info("voice", "voice"), info("sms", "sms"), info("wa", "whatsapp"), info("mail", "email")]


@pytest.mark.parametrize(("priority", "first"), [(Priority.CRITICAL, "voice"), (Priority.HIGH, "sms"),
                                                 (Priority.MEDIUM, "wa"), (Priority.LOW, "mail")])
def test_priority_map_chooses_the_first_kind_and_keeps_the_rest_as_fallbacks(priority, first):
    route = PriorityStrategy(load_balance=False).plan(envelope(priority), CHANNELS)
    assert route[0] == first and sorted(route) == sorted(c.name for c in CHANNELS)


def test_channels_of_one_kind_are_balanced_by_weight_and_health():
    strategy = PriorityStrategy(rng=random.Random(1))
    pair = [info("sms-a", "sms", weight=3), info("sms-b", "sms", weight=1)]
    firsts = collections.Counter(strategy.plan(envelope(), pair)[0] for _ in range(4000))
    assert 0.70 < firsts["sms-a"] / 4000 < 0.80

    unhealthy = [info("sms-a", "sms", weight=3, attempts=100, accepted=10), info("sms-b", "sms", weight=1)]
    firsts = collections.Counter(strategy.plan(envelope(), unhealthy)[0] for _ in range(4000))
    assert firsts["sms-b"] > firsts["sms-a"], "a failing provider loses its share"


def test_cheapest_orders_by_cost_for_this_message():
    chans = [info("voice", "voice", 0.013), info("sms", "sms", 0.0079), info("mail", "email", 0.0006)]
    assert CheapestStrategy().plan(envelope(), chans) == ["mail", "sms", "voice"]


def test_most_reliable_orders_by_observed_success():
    chans = [info("flaky", "sms", attempts=100, accepted=60), info("solid", "whatsapp", attempts=100, accepted=99),
             info("new", "voice")]
    assert MostReliableStrategy().plan(envelope(), chans) == ["solid", "flaky", "new"]


def adaptive(storage, clock, **kw):
    return AdaptiveStrategy(storage, AdaptiveSettings(sync_interval_seconds=0, seed=7, **kw), clock=clock)


def feed(strategy, channel, successes, failures, country="GB"):
    """``successes`` accepted and ``failures`` refused sends, evenly interleaved (as traffic is)."""
    total = successes + failures
    for i in range(total):
        ok = (i + 1) * successes // total > i * successes // total
        strategy.observe(RouteOutcome(message_id="m", channel=channel, priority=Priority.HIGH,
                                      status=Status.SENT if ok else Status.FAILED, country=country, latency_ms=50))


def report(strategy, channel, *, delivered, sent_at, message_id="m", ttd=None, country=None, cost=0.0):
    """A provider's final report on a send accepted at ``sent_at``."""
    ttd_ms = None if not delivered else 1000.0 * (ttd if ttd is not None else strategy.clock() - sent_at)
    strategy.observe(RouteOutcome(message_id=message_id, channel=channel, priority=Priority.HIGH, callback=True,
                                  status=Status.DELIVERED if delivered else Status.UNDELIVERED, country=country,
                                  accepted_at=sent_at, time_to_deliver_ms=ttd_ms, cost=cost))


def firsts(strategy, chans, n=500, **kw):
    return collections.Counter(strategy.plan(envelope(**kw), chans)[0] for _ in range(n))


def test_adaptive_learns_which_channel_delivers(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    chans = [info("a", "sms", 0.01), info("b", "sms", 0.01)]
    feed(strategy, "a", 20, 80)
    feed(strategy, "b", 95, 5)
    assert firsts(strategy, chans)["b"] > 480


def test_adaptive_minimises_cost_per_delivered_message(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    # cheap but unreliable: 0.001/0.5 = 0.002 per delivery beats 0.01/0.99
    chans = [info("cheap", "email", 0.001), info("pricey", "sms", 0.01)]
    feed(strategy, "cheap", 50, 50)
    feed(strategy, "pricey", 99, 1)
    assert firsts(strategy, chans)["cheap"] > 450
    critical = firsts(strategy, chans, priority=Priority.CRITICAL)
    assert critical["pricey"] > 450, "CRITICAL goes to the most likely channel whatever it costs"


def test_adaptive_notices_an_outage_within_a_few_dozen_messages(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    chans = [info("best", "sms", 0.005), info("other", "sms", 0.008)]
    feed(strategy, "best", 200, 5)
    feed(strategy, "other", 60, 3)
    assert firsts(strategy, chans)["best"] > 450
    feed(strategy, "best", 0, 25)
    assert firsts(strategy, chans)["other"] > 400


def test_adaptive_explores_again_after_idle_time_so_a_recovery_is_noticed(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock, half_life_seconds=600)
    chans = [info("was-down", "sms", 0.005), info("other", "sms", 0.008)]
    feed(strategy, "was-down", 0, 60)
    feed(strategy, "other", 95, 5)
    before = firsts(strategy, chans)["was-down"]
    clock.advance(3600)
    feed(strategy, "other", 1, 0)
    after = firsts(strategy, chans)["was-down"]
    assert before < 10 and after > 50


def test_adaptive_learning_is_shared_through_storage_and_survives_restarts(storage):
    clock = FakeClock()
    first = adaptive(storage, clock)
    feed(first, "a", 5, 95)
    feed(first, "b", 95, 5)
    second = adaptive(storage, clock)
    assert second.belief("b", "GB").mean > 0.8 and second.belief("a", "GB").mean < 0.2


def test_adaptive_keeps_countries_apart(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    feed(strategy, "a", 95, 5, country="GB")
    feed(strategy, "a", 5, 95, country="US")
    assert strategy.belief("a", "GB").mean > 0.7 > 0.3 > strategy.belief("a", "US").mean


def test_an_accepted_send_is_pending_until_its_report_and_an_undelivered_report_is_a_failure(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    report(strategy, "a", delivered=True, sent_at=clock())  # the channel reports on its sends
    before = strategy.belief("a").mean
    for i in range(10):
        strategy.observe(RouteOutcome(message_id=f"m{i}", channel="a", priority=Priority.HIGH, status=Status.SENT))
    assert strategy.belief("a").mean == pytest.approx(before), "accepted is not delivered"
    clock.advance(5)
    for i in range(10):
        report(strategy, "a", delivered=False, sent_at=clock() - 5, message_id=f"m{i}")
    assert strategy.belief("a").mean < 0.3 < before


def test_otp_goes_first_to_a_channel_that_reaches_the_reader_within_their_patience(storage):
    clock = FakeClock()
    strategy = adaptive(storage, clock)
    start = clock()
    sends = [(start + i, "send", name, i) for i in range(60) for name in ("slow", "fast")]
    reports = [(start + i + ttd, "report", name, i) for i in range(60) for name, ttd in (("slow", 90), ("fast", 3))]
    events = sorted(sends + reports)
    for at, what, name, i in events:  # one send per channel per second; reports 3 s and 90 s later
        clock.now = at
        if what == "send":
            strategy.observe(RouteOutcome(message_id=f"{name}{i}", channel=name, priority=Priority.HIGH,
                                          status=Status.SENT))
        else:
            report(strategy, name, delivered=True, sent_at=start + i, message_id=f"{name}{i}")
    chans = [info("slow", "email", 0.0001), info("fast", "sms", 0.01)]
    otp = firsts(strategy, chans, message_type=MessageType.OTP, expires_at=clock() + 300)
    assert otp["fast"] == 500, "email is cheapest but the reader would wait 90 s"
    assert firsts(strategy, chans)["slow"] > 450, "a notification can wait: cheapest first"


def test_adaptive_is_chosen_from_config(tmp_path, make_agent):
    agent = make_agent(routing={"strategy": "adaptive", "decay": 0.95})
    assert type(agent.strategy).__name__ == "AdaptiveStrategy"
    assert agent.strategy.settings.decay == 0.95


def test_unknown_adaptive_setting_is_named(make_agent):
    from otpagent import ConfigError

    with pytest.raises(ConfigError) as exc:
        make_agent(routing={"strategy": "adaptive", "decai": 0.9})
    assert exc.value.path == "routing.decai"


def test_plugin_context_has_a_clock():
    assert callable(PluginContext(config_dir=".").clock)


def test_the_country_is_looked_up_only_for_strategies_that_learn_by_it(make_agent):
    from otpagent.protocols import observes_country

    class Custom:  # a third-party strategy that says nothing gets the country
        def plan(self, envelope, candidates):
            return [c.name for c in candidates]

        def observe(self, outcome):
            pass

    assert observes_country(PriorityStrategy()) is False
    assert observes_country(Custom()) is True
    planner = make_agent().planner  # the built-in priority strategy: no country
    assert planner.outcome_country("+447700900123") is None
    custom = make_agent(routing={"strategy": "adaptive"}).planner
    assert custom.outcome_country("+447700900123") == "GB"
    assert custom.outcome_country("+12025550123") == "US"
    assert custom.outcome_country(None) is None
