"""What the command line prints: ``--json`` on every command with a result, the documented exit
statuses, tables that stay readable at 80 columns, and shell completion."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import agent_config, console_channels
from tests.core.test_cli import otpagent


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path)))
    return path


def _json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.stdout.strip(), run.stderr
    return json.loads(run.stdout)


def _narrow(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "otpagent.cli", *(["--config", str(config)] if config else []), *args]
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def test_every_command_with_a_result_prints_one_json_document(config_file: Path, tmp_path: Path) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps({"messages": [{"phone_number": "+447700900123", "content": "a"},
                                                 {"email": "ada@example.com", "content": "b"}]}))

    sent = _json(otpagent("send", "--to", "+447700900123", "--json", "queued only", config=config_file))
    otp = _json(otpagent("otp", "send", "+447700900124", "--json", config=config_file))
    verify = otpagent("otp", "verify", "+447700900124", "000000", "--json", config=config_file)
    loaded = _json(otpagent("load", str(messages), "--json", config=config_file))
    checked = _json(otpagent("config", "check", "--json", config=config_file))
    status = _json(otpagent("status", sent["message_id"], "--json", config=config_file))
    stats = _json(otpagent("stats", "--json", config=config_file))
    cleaned = _json(otpagent("cleanup", "--older-than-days", "0", "--json", config=config_file))
    plugins = _json(otpagent("plugins", "--json"))

    assert sent["status"] == "queued" and sent["message_id"].startswith("msg_")
    assert otp["status"] == "queued"
    assert verify.returncode == 1 and _json(verify) == {"verified": False, "reason": "invalid"}
    assert loaded["queued"] == 2 and len(loaded["message_ids"]) == 2
    assert checked["ok"] is True and checked["storage"] == "sqlite"
    assert {c["name"] for c in checked["channels"]} == {"voice", "sms", "whatsapp", "email"}
    assert status["message_id"] == sent["message_id"]
    assert stats["queue_size"] == 4
    assert cleaned["older_than_days"] == 0 and set(cleaned["deleted"]) >= {"messages", "events"}
    assert any(p["name"] == "console" for p in plugins)


@pytest.mark.parametrize(("args", "code", "kind"), [
    (("send", "--to", "12", "bad number"), 2, "invalid_input"),
    (("status", "msg_nope"), 1, "not_found"),
])
def test_errors_are_json_too_with_the_documented_exit_status(config_file: Path, args: tuple[str, ...], code: int,
                                                             kind: str) -> None:
    run = otpagent(*args, "--json", config=config_file)

    assert run.returncode == code
    error = _json(run)
    assert error["exit_code"] == code and error["error"]["kind"] == kind
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr


def test_a_second_code_within_the_cooldown_is_unavailable_for_now(config_file: Path) -> None:
    assert otpagent("otp", "send", "+447700900125", config=config_file).returncode == 0

    again = otpagent("otp", "send", "+447700900125", "--json", config=config_file)

    assert again.returncode == 3
    error = _json(again)["error"]
    assert error["kind"] == "rate_limited" and 0 < error["retry_after"] <= 30


def test_a_store_that_cannot_be_reached_is_unavailable_not_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"backend": "postgres", "dsn": "postgresql://postgres@127.0.0.1:1/none",
                                            "connect_timeout_seconds": 1, "retry_seconds": 1}}))

    run = otpagent("stats", "--json", config=path)

    assert run.returncode == 3, run.stderr
    assert _json(run)["error"]["kind"] == "unavailable" and "Connection refused" in run.stderr


def _fits(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    return lines


def test_tables_stay_readable_at_80_columns(tmp_path: Path) -> None:
    channels = console_channels(tmp_path / "outbox.jsonl", **{"whatsapp-business-eu": {"kind": "whatsapp",
                                                                                          "cost": 0.0123}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path, channels=channels)))
    sent = otpagent("send", "--to", "+447700900123", "--channel", "whatsapp-business-eu", "hello there",
                    "--wait", "--json", config=path)
    message_id = _json(sent)["message_id"]

    stats = _fits(_narrow("stats", config=path).stdout)
    status = _fits(_narrow("status", message_id, config=path).stdout)
    plugins = _fits(_narrow("plugins").stdout)

    row = next(line for line in stats if line.lstrip().startswith("whatsapp-busin"))
    assert re.search(r"closed\s+1\s+1\s+0\s+100\.0\s+\d+\s+0\.0123\s+0\.01\s*$", row), row
    assert any(re.fullmatch(r"\s*1\s+whatsapp-business-eu\s+accepted\s+-\s+\d+\s+-\s*", line) for line in status)
    assert any("status     sent" in line for line in status)
    assert any(line.lstrip().startswith("console ") for line in plugins)


def test_shell_completion_script_generates_and_completes_commands() -> None:
    env = {**os.environ, "_OTPAGENT_COMPLETE": "bash_source"}
    script = subprocess.run([sys.executable, "-m", "otpagent.cli"], capture_output=True, text=True, timeout=60,
                            env=env)
    env = {**os.environ, "_OTPAGENT_COMPLETE": "bash_complete", "COMP_WORDS": "otpagent ot", "COMP_CWORD": "1"}
    completed = subprocess.run([sys.executable, "-m", "otpagent.cli"], capture_output=True, text=True, timeout=60,
                               env=env)

    assert script.returncode == 0 and "complete -o nosort -F _otpagent_completion otpagent" in script.stdout
    assert completed.stdout.split() == ["plain,otp"]


@pytest.mark.parametrize("width", [80, 150])
def test_delivery_reports_keep_every_attempt_whole_at_any_width(tmp_path: Path, width: int) -> None:
    from rich.console import Console

    from otpagent import IntelligentOTPAgent, MessageRequest, Priority
    from otpagent.reporting import reports_table

    base = {"plugin": "console", "quiet": True, "kind": "sms"}
    config = agent_config(tmp_path, channels={"sms-primary": {**base, "weight": 2, "fail_rate": 1.0,
                                                              "fail_mode": "permanent"}, "sms-backup": base})
    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        message_id = agent.send_message(MessageRequest(phone_number="+447700900123", content="x",
                                                       priority=Priority.CRITICAL, message_type="notification"))
        assert agent.wait_until_idle(10)
        report = agent.get_delivery_report(message_id)
    console = Console(width=width, record=True, file=io.StringIO())

    console.print(reports_table([report]))
    text = console.export_text()

    assert max(len(line) for line in text.splitlines()) <= width
    assert "sms-primary:permanent(console-400) → sms-backup:accepted" in text
    assert re.search(rf"{message_id[-10:]}\s+notification\s+CRITICAL\s+sent\s+sms-backup\s+2", text)
