"""The ``otpagent`` command: every subcommand, and errors as one line without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import agent_config, run_until_sent


def otpagent(*args: str, config: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "otpagent.cli"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path)))
    return path


def test_send_status_and_stats(config_file):
    sent = otpagent("send", "--to", "+447700900123", "--priority", "HIGH", "Hello there", config=config_file)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.strip()
    assert message_id.startswith("msg_")

    status = otpagent("status", message_id, "--json", config=config_file)
    assert json.loads(status.stdout)["status"] == "queued"
    stats = otpagent("stats", "--json", config=config_file)
    assert json.loads(stats.stdout)["queue_size"] == 1


def test_otp_send_then_verify_exit_codes(config_file, tmp_path):
    sent = otpagent("otp", "send", "+447700900123", config=config_file)
    assert sent.returncode == 0, sent.stderr
    wrong = otpagent("otp", "verify", "+447700900123", "000000", config=config_file)
    assert wrong.returncode == 1 and wrong.stdout.strip() in ("invalid",)


def test_load_reports_every_bad_entry_in_one_line_and_queues_nothing(config_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"phone_number": "+447700900123", "content": "ok"},
                               {"phone_number": "nope", "content": "x"}, {"content": "no recipient"}]))
    run = otpagent("load", str(bad), config=config_file)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1
    assert "[1].phone_number" in run.stderr and "[2].phone_number" in run.stderr
    assert json.loads(otpagent("stats", "--json", config=config_file).stdout)["queue_size"] == 0


def test_load_queues_a_good_file_with_progress(config_file, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"phone_number": "+447700900123", "content": f"m{i}"} for i in range(25)]))
    run = otpagent("load", str(good), config=config_file)
    assert run.returncode == 0, run.stderr
    assert "queued 25 messages" in run.stdout


def test_bad_config_is_one_line_naming_the_key(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"retry": {"max_attempts": 0}}))
    run = otpagent("config", "check", config=path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "error: config error at retry.max_attempts: must be at least 1"


def test_missing_plugin_says_what_to_install(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"backend": "mongodb"}}))
    run = otpagent("config", "check", config=path)
    assert run.returncode == 2 and "storage.backend" in run.stderr and "Traceback" not in run.stderr


def test_config_check_and_cleanup_and_plugins(config_file):
    assert otpagent("config", "check", config=config_file).returncode == 0
    cleanup = otpagent("cleanup", "--older-than-days", "0", config=config_file)
    assert cleanup.returncode == 0 and "messages:" in cleanup.stdout
    assert "console" in otpagent("plugins").stdout


def test_run_works_the_queue_until_sigterm(config_file, tmp_path):
    otpagent("send", "--to", "+447700900123", "--priority", "HIGH", "from the queue", config=config_file)
    outbox = tmp_path / "outbox.jsonl"
    returncode, err = run_until_sent([sys.executable, "-m", "otpagent.cli", "--config", str(config_file), "run"],
                                     outbox)
    assert returncode == 0, err
    assert "from the queue" in outbox.read_text()
    assert "stopped" in err


def test_demo_runs_end_to_end():
    run = otpagent("demo", timeout=120)
    assert run.returncode == 0, run.stderr
    assert "verify_otp with the right code → (True, 'verified')" in run.stdout
    assert "Delivery reports" in run.stdout and "fallbacks" in run.stdout
