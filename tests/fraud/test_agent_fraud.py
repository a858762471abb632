"""The fraud guard in the agent: send_otp refused for a held prefix, verify_otp counted, the
hold shared through SQLite by two agents, the event on the bus, and the CLI (the service's 403
is in tests/service/test_fraud_hold.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from otpagent import IntelligentOTPAgent
from otpagent.errors import ConfigError, OtpHeld
from otpagent.model import Event
from otpagent.sinks.webhook_settings import parse_webhook_settings
from tests.conftest import FakeClock, agent_config, wait_for

GUARD = {"min_volume": 5, "flush_seconds": 0}
OTP = {"resend_cooldown_seconds": 0, "max_per_hour": 1000, "fraud_guard": GUARD}


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        """Nothing to release."""


def pump(agent: IntelligentOTPAgent, clock: FakeClock, prefix: str = "+447700900", count: int = 6) -> None:
    """Codes nobody enters, then enough time for them to count, then the request that tips it."""
    for i in range(count):
        agent.send_otp(f"{prefix}{i:03d}")
        clock.advance(10)
    clock.advance(200)
    agent.send_otp(f"{prefix}{count:03d}")


def code_of(agent: IntelligentOTPAgent, message_id: str) -> str:
    message = agent.storage.get_message(message_id)
    assert message is not None and message.secret and agent.otp is not None
    return agent.otp.sealer.open(message_id, message.secret)


def test_codes_to_a_pumped_prefix_are_held_and_the_event_reaches_the_sinks(
        make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock, otp=OTP)
    sink = Collect()
    agent.bus.add_sink(sink)
    agent.bus.start()
    pump(agent, clock)
    with pytest.raises(OtpHeld) as refused:
        agent.send_otp("+447700900999")
    assert refused.value.prefix == "+447700"
    assert "fraud guard" in str(refused.value) and "999" not in str(refused.value)
    assert agent.send_otp("+447911123456"), "another prefix is not held"
    assert wait_for(lambda: any(e.type == "fraud_prefix_held" for e in sink.events))
    held = next(e for e in sink.events if e.type == "fraud_prefix_held")
    assert held.data["prefix"] == "+447700" and held.data["country"] == "GB"
    assert [s.prefix for s in agent.fraud_status() if s.held_until is not None] == ["+447700"]
    assert list(agent.get_metrics()["fraud_guard"]["held"]) == ["+447700"]


def test_codes_that_are_entered_keep_the_prefix_open(make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock, otp=OTP)
    for i in range(20):
        phone = f"+447700900{i:03d}"
        message_id = agent.send_otp(phone)
        clock.advance(15)
        if i % 5:
            assert agent.verify_otp(phone, code_of(agent, message_id)) == (True, "verified")
        clock.advance(15)
    clock.advance(200)
    assert agent.send_otp("+447700900999")
    assert all(s.held_until is None for s in agent.fraud_status())


def test_a_hold_made_by_one_agent_holds_for_another_on_the_same_database(
        tmp_path: Path, make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    clock = FakeClock()
    first = make_agent(clock=clock, otp=OTP)
    second = make_agent(clock=clock, otp=OTP)
    assert first.config.storage["path"] == second.config.storage["path"]
    pump(first, clock)
    with pytest.raises(OtpHeld):
        second.send_otp("+447700900998")
    assert second.release_prefix("+447700") is True
    assert first.send_otp("+447700900997"), "the release holds for every agent"
    assert first.release_prefix("+447700") is False


def test_the_guard_can_be_turned_off(make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={**OTP, "fraud_guard": {**GUARD, "enabled": False}})
    pump(agent, clock, count=20)
    assert agent.send_otp("+447700900999")
    assert agent.fraud_guard is None
    with pytest.raises(ConfigError, match=r"otp\.fraud_guard\.enabled"):
        agent.release_prefix("+447700")


def test_webhook_filters_take_the_fraud_events() -> None:
    settings = parse_webhook_settings({"plugin": "webhook", "url": "https://hooks.example/x",
                                       "secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                       "events": ["fraud.prefix_held", "fraud_prefix_released"]})
    assert settings.events == {"fraud_prefix_held", "fraud_prefix_released"}


def otpagent(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_exits_5_for_a_held_prefix_and_can_show_and_release_it(tmp_path: Path) -> None:
    config = agent_config(tmp_path, otp=OTP)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    clock = FakeClock()  # starts at the real time: the hold is still on when the CLI runs
    with IntelligentOTPAgent(config, clock=clock) as agent:
        pump(agent, clock)

    sent = otpagent(path, "otp", "send", "+447700900555", "--json")
    assert sent.returncode == 5, sent.stderr
    assert json.loads(sent.stdout)["error"]["kind"] == "otp_held"

    status = otpagent(path, "fraud", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert rows[0]["prefix"] == "+447700" and rows[0]["held_until"] is not None

    table = otpagent(path, "fraud", "status").stdout
    assert table.startswith("1 prefix(es) held") and "+447700" in table and "min more" in table

    assert otpagent(path, "fraud", "release", "+447700").returncode == 0
    assert otpagent(path, "fraud", "release", "+447700").returncode == 1
    assert otpagent(path, "otp", "send", "+447700900556").returncode == 0


def test_a_file_with_an_otp_to_a_held_prefix_queues_nothing(tmp_path: Path,
                                                          make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock, otp=OTP)
    pump(agent, clock)
    before = agent.capabilities.housekeeping.stats(clock()).by_status.get("queued", 0)
    rows = [{"phone_number": "+447911123456", "message_type": "otp"},
            {"phone_number": "+447700900321", "message_type": "otp"}]
    (tmp_path / "codes.json").write_text(json.dumps(rows))
    with pytest.raises(OtpHeld):
        agent.load_messages_from_json(tmp_path / "codes.json")
    assert agent.capabilities.housekeeping.stats(clock()).by_status.get("queued", 0) == before


def test_the_error_survives_a_trip_between_processes() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(OtpHeld("+447700", 2000.0, 1000.0)))
    assert (error.prefix, error.until, error.retry_after) == ("+447700", 2000.0, 1000.0)
