"""The plugin tutorial's example package, installed like any plugin and used from config."""

from __future__ import annotations

import importlib.metadata

import pytest

from otpagent import ConfigError, MessageRequest
from tests.conftest import FakeClock

MIDNIGHT_UTC = 1_795_651_200.0  # 2026-11-26 00:00:00 UTC


def test_example_strategy_is_installed_as_an_entry_point():
    names = {ep.name for ep in importlib.metadata.entry_points(group="otpagent")}
    assert "quiet-hours" in names


def send_high_alert(agent):
    message_id = agent.send_message(MessageRequest(phone_number="+447700900123", email="night@example.com",
                                                   message_type="alert", content="New sign-in", priority="HIGH"))
    agent.start_processing()
    assert agent.wait_until_idle(10)
    agent.stop_processing()
    return agent.get_delivery_report(message_id)


def test_at_night_non_critical_messages_go_to_quiet_channels(make_agent):
    clock = FakeClock()
    clock.now = MIDNIGHT_UTC + 3 * 3600
    agent = make_agent(clock=clock, routing={"strategy": "quiet-hours", "start_hour": 22, "end_hour": 7})
    report = send_high_alert(agent)
    assert report.channel == "email" and report.route[-1] == "voice"


def test_in_the_day_it_follows_the_priority_map(make_agent):
    clock = FakeClock()
    clock.now = MIDNIGHT_UTC + 12 * 3600
    agent = make_agent(clock=clock, routing={"strategy": "quiet-hours"})
    assert send_high_alert(agent).channel == "sms"


def test_example_strategy_checks_its_config(make_agent):
    with pytest.raises(ConfigError) as exc:
        make_agent(routing={"strategy": "quiet-hours", "start_hour": 25})
    assert exc.value.path == "routing.start_hour"
