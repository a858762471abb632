"""Numbers that agree: every process reads the fleet's figures from storage; only
``this_process`` is per process, and says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from otpagent import IntelligentOTPAgent, MessageRequest, Priority
from tests.conftest import agent_config


def _flaky_then_backup(tmp_path: Path) -> dict[str, Any]:
    base = {"plugin": "console", "quiet": True, "outbox": str(tmp_path / "outbox.jsonl"), "kind": "sms"}
    return agent_config(tmp_path, channels={"primary": {**base, "weight": 2, "fail_rate": 1.0},
                                            "backup": {**base}})


def test_another_process_reports_the_retries_and_fallbacks_the_sender_made(tmp_path: Path) -> None:
    config = _flaky_then_backup(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with IntelligentOTPAgent(config) as sender:
        sender.start_processing()
        sender.send_message(MessageRequest(phone_number="+447700900123", content="x", priority=Priority.HIGH))
        assert sender.wait_until_idle(10)
        own = sender.get_metrics()
        elsewhere = subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(tmp_path / "config.json"),
                                    "stats", "--json"], capture_output=True, text=True, timeout=60)

    assert elsewhere.returncode == 0, elsewhere.stderr
    theirs = json.loads(elsewhere.stdout)
    for figures in (own, theirs):
        assert {k: figures["last_24h"]["messages"][k] for k in ("sent", "failed", "retries", "fallbacks")} == {
            "sent": 1, "failed": 0, "retries": 2, "fallbacks": 1}
        assert figures["last_24h"]["attempts"]["total"] == 4
        assert figures["last_24h"]["attempts"]["failed"] == 3
        assert figures["channels"]["primary"]["failed"] == 3
        assert figures["workers"]["live"] == 1, "the sender is alive while the other process looks"
    assert own["this_process"]["counters"]["retries"] == 2 and own["this_process"]["is_running"]
    assert theirs["this_process"]["counters"] == dict.fromkeys(own["this_process"]["counters"], 0)
    assert theirs["this_process"]["is_running"] is False


def test_message_and_attempt_success_rates_are_separate_figures(tmp_path: Path) -> None:
    with IntelligentOTPAgent(_flaky_then_backup(tmp_path)) as agent:
        agent.start_processing()
        agent.send_message(MessageRequest(phone_number="+447700900123", content="x", priority=Priority.HIGH))
        assert agent.wait_until_idle(10)
        metrics = agent.get_metrics()

    assert metrics["database_stats"]["success_rate"] == 100.0, "the message got through"
    assert metrics["last_24h"]["attempts"]["success_rate"] == 25.0, "one attempt of four was accepted"


def test_todays_spend_and_budget_are_reported_per_channel(tmp_path: Path) -> None:
    base = {"plugin": "console", "quiet": True, "kind": "sms"}
    config = agent_config(tmp_path, channels={"paid": {**base, "cost": 0.25, "daily_budget": 10}})
    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        for i in range(2):
            agent.send_message(MessageRequest(phone_number="+447700900123", content=f"m{i}"))
        assert agent.wait_until_idle(10)
        paid = agent.get_metrics()["channels"]["paid"]

    assert (paid["daily_spend"], paid["daily_budget"], paid["cost"]) == (0.5, 10.0, 0.5)
