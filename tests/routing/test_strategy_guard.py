"""Strategy guard rails: a plan that raises or returns garbage routes by the priority order instead,
an observe that raises is dropped, and each is logged at most once a minute naming the plugin."""

from __future__ import annotations

from typing import Any

import pluggy
import pytest

from otpagent import IntelligentOTPAgent, MessageRequest, Status
from otpagent.hookspecs import hookimpl
from otpagent.model import Envelope, MessageType, Priority
from otpagent.plugins import build_registry, get_plugin_manager
from otpagent.protocols import ChannelInfo, ChannelStats, ProviderEvent, ProviderEventOutcome, RouteOutcome
from otpagent.routing.guard import StrategyGuard
from tests.conftest import FakeClock, wait_for

CANDIDATES = [ChannelInfo(name=n, kind=k, cost=0.01, stats=ChannelStats())
              for n, k in (("mail", "email"), ("wa", "whatsapp"), ("sms", "sms"), ("voice", "voice"))]
PRIORITY_ORDER = ["voice", "sms", "wa", "mail"]  # the built-in map for CRITICAL
ENVELOPE = Envelope(message_id="m", message_type=MessageType.ALERT, priority=Priority.CRITICAL, body="hi",
                    phone_number="+447700900123", email="a@example.com")
OUTCOME = RouteOutcome(message_id="m", channel="sms", priority=Priority.HIGH, status=Status.SENT)


class Scripted:
    """A strategy plugin whose plan returns (or raises) what the test says."""

    def __init__(self, plan: Any) -> None:
        self._plan = plan

    def plan(self, envelope: Envelope, candidates: Any) -> Any:
        if isinstance(self._plan, Exception):
            raise self._plan
        return self._plan

    def observe(self, outcome: RouteOutcome) -> None:
        raise KeyError("no such channel in my table")


def _guard(plan: Any, clock: FakeClock) -> StrategyGuard:
    return StrategyGuard(Scripted(plan), label="acme-routing 1.2.0", clock=clock)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "strategy_failed" in r.getMessage()]


@pytest.mark.parametrize(("plan", "problem"), [
    (ZeroDivisionError("division by zero"), "plan raised ZeroDivisionError: division by zero"),
    (None, "plan returned None instead of a list of channel names"),
    ("sms", "plan returned a str instead of a list of channel names"),
    ({"sms": 1}, "plan returned a dict instead of a list of channel names"),
    ([1, "sms"], "plan returned a list holding int values instead of channel names"),
    (["sms", "fax"], "plan returned names that are not candidates: 'fax'"),
    (["sms", "sms"], "plan named 'sms' more than once"),
    ([], "plan returned an empty route although 4 channel(s) can take the message"),
])
def test_a_broken_plan_falls_back_to_the_priority_order_and_says_why(plan, problem, caplog):
    guard = _guard(plan, FakeClock())

    assert guard.plan(ENVELOPE, CANDIDATES) == PRIORITY_ORDER
    [line] = _lines(caplog)
    assert problem in line
    assert "plugin='acme-routing 1.2.0'" in line and "hook='plan'" in line


def test_a_valid_plan_is_used_as_it_is_even_a_subset():
    guard = _guard(("mail", "sms"), FakeClock())
    assert guard.plan(ENVELOPE, CANDIDATES) == ["mail", "sms"]


def test_the_fault_is_logged_at_most_once_a_minute_with_the_repeats_counted(caplog):
    clock = FakeClock()
    guard = _guard(None, clock)
    for _ in range(5):
        assert guard.plan(ENVELOPE, CANDIDATES) == PRIORITY_ORDER
        clock.advance(10)
    assert len(_lines(caplog)) == 1

    clock.advance(20)  # 70 s after the first line
    guard.plan(ENVELOPE, CANDIDATES)
    lines = _lines(caplog)
    assert len(lines) == 2
    assert "repeats_since_last_log=4" in lines[1]


def test_observe_that_raises_never_reaches_the_caller_and_is_logged_once_a_minute(caplog):
    clock = FakeClock()
    guard = _guard([], clock)
    for _ in range(3):
        guard.observe(OUTCOME)
    [line] = _lines(caplog)
    assert "hook='observe'" in line and "KeyError" in line and "plugin='acme-routing 1.2.0'" in line


class _BrokenStrategyPlugin:
    @hookimpl
    def otpagent_register_routing_strategies(self, register: Any) -> None:
        register("broken", lambda settings, context: Scripted(RuntimeError("model file missing")))


def test_a_message_routed_by_a_broken_strategy_is_sent_in_priority_order(tmp_path, caplog):
    pm: pluggy.PluginManager = get_plugin_manager()
    plugin = _BrokenStrategyPlugin()
    pm.register(plugin, name="broken-strategy-test")
    try:
        config = {"storage": {"path": str(tmp_path / "a.db")}, "routing": {"strategy": "broken"}, "sinks": [],
                  "otp": {"key_file": str(tmp_path / "otpagent.key")},
                  "channels": {k: {"plugin": "console", "kind": k, "quiet": True} for k in ("sms", "email")}}
        with IntelligentOTPAgent(config, registry=build_registry(pm)) as agent:
            agent.start_processing()
            ids = [agent.send_message(MessageRequest(phone_number="+447700900123", email="a@example.com",
                                                     content="hi", priority=p)) for p in ("HIGH", "LOW")]
            assert wait_for(lambda: all(agent.get_delivery_report(i).status is Status.SENT for i in ids), 60)
            assert [agent.get_delivery_report(i).channel for i in ids] == ["sms", "email"]
            # A provider callback feeds observe too: the strategy raises there as well, harmlessly.
            attempt = agent.get_delivery_report(ids[0]).attempt_log[-1]
            result = agent.record_provider_event(ProviderEvent(
                source="test", event_id="e1", provider_message_id=attempt.provider_message_id or "",
                status=Status.DELIVERED))
            assert result.outcome is ProviderEventOutcome.APPLIED
    finally:
        pm.unregister(plugin)
    lines = _lines(caplog)
    # One line per hook (each throttled to one a minute), whichever worker thread logged first.
    plan = [line for line in lines if "hook='plan'" in line]
    observe = [line for line in lines if "hook='observe'" in line]
    assert len(plan) == 1 and len(observe) == 1 and len(lines) == 2, lines
    assert "plugin='broken-strategy-test (registered in process)'" in plan[0] and "model file missing" in plan[0]
