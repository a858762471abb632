"""``send --wait`` and ``otp send --wait``: the command line sees a message through, delivering
it itself when no worker runs, waiting for one when one does, and saying which happened."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent
from otpagent.fleet import live_workers
from tests.conftest import Outbox, agent_config, console_channels
from tests.core.test_cli import otpagent


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path)))
    return path


@pytest.fixture
def worker(config_file: Path) -> Iterator[subprocess.Popen[str]]:
    """``otpagent run`` in its own process, live in the roster before the test goes on."""
    proc = subprocess.Popen([sys.executable, "-m", "otpagent.cli", "--config", str(config_file), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with IntelligentOTPAgent(str(config_file)) as observer:
        deadline = time.monotonic() + 30
        while not live_workers(observer.capabilities.shared_state, time.time()):
            assert time.monotonic() < deadline and proc.poll() is None, "the worker did not start"
            time.sleep(0.05)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def _json(run: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(run.stdout)


def test_with_no_worker_running_send_wait_delivers_it_in_this_process(config_file: Path, tmp_path: Path) -> None:
    run = otpagent("send", "--to", "+447700900123", "--wait=30", "see it through", config=config_file)

    assert run.returncode == 0, run.stderr
    message_id, outcome = run.stdout.splitlines()
    assert outcome.startswith("sent via ") and "(handled by this process: no worker was running)" in outcome
    assert [e["body"] for e in Outbox(tmp_path / "outbox.jsonl").for_message(message_id)] == ["see it through"]


def test_with_a_worker_running_send_wait_leaves_it_to_the_worker(config_file: Path, worker: Any,
                                                                  tmp_path: Path) -> None:
    run = otpagent("send", "--to", "+447700900123", "worker's job", "--wait", "--json", config=config_file)

    assert run.returncode == 0, run.stderr
    result = _json(run)
    assert (result["status"], result["finished"], result["delivered_by"]) == ("sent", True, "worker")
    assert result["worked_in_this_process"] is False and len(result["workers_seen"]) == 1
    assert len(Outbox(tmp_path / "outbox.jsonl").for_message(result["message_id"])) == 1


def test_otp_send_wait_json_keeps_the_channel_output_off_stdout(config_file: Path) -> None:
    run = otpagent("otp", "send", "+447700900123", "--wait", "--json", config=config_file)

    assert run.returncode == 0, run.stderr
    result = _json(run)  # stdout is one JSON document, nothing else
    assert (result["status"], result["delivered_by"], result["attempts"]) == ("sent", "this_process", 1)


def test_two_processes_waiting_at_once_with_no_worker_send_each_message_once(config_file: Path,
                                                                             tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "otpagent.cli", "--config", str(config_file), "send", "--to", "+447700900123",
           "--wait=60", "--json"]
    procs = [subprocess.Popen([*cmd, f"race {i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = [p.communicate(timeout=90) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    outcomes = [json.loads(out) for out, _ in results]
    assert {o["status"] for o in outcomes} == {"sent"}
    # The first to look found no worker and worked the queue; the second either did the same or
    # found the first in the roster and left its message to it (until it stopped: then it works).
    assert any(o["worked_in_this_process"] for o in outcomes)
    sent = Outbox(tmp_path / "outbox.jsonl").entries()
    assert sorted(e["body"] for e in sent) == ["race 0", "race 1"], "each message went out exactly once"


def test_a_wait_that_runs_out_exits_4_and_leaves_the_message_queued(config_file: Path) -> None:
    later = "2099-01-01T00:00:00+00:00"
    run = otpagent("send", "--to", "+447700900123", "--at", later, "--wait=0.5", "--json", "not yet",
                   config=config_file)

    assert run.returncode == 4, run.stderr
    result = _json(run)
    assert (result["status"], result["finished"], result["delivered_by"]) == ("scheduled", False, None)
    status = otpagent("status", result["message_id"], "--json", config=config_file)
    assert _json(status)["status"] == "scheduled"


def test_a_message_that_fails_exits_1_with_the_reason(tmp_path: Path) -> None:
    broken = console_channels(tmp_path / "outbox.jsonl")
    broken = {"sms": {**broken["sms"], "fail_rate": 1.0, "fail_mode": "permanent"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path, channels=broken)))

    run = otpagent("send", "--to", "+447700900123", "doomed", "--wait", config=path)

    assert run.returncode == 1, run.stderr
    outcome = run.stdout.splitlines()[1]
    assert outcome.startswith("failed after 1 attempt(s) in ")
    assert "sms: simulated permanent failure [console-400] (handled by this process" in outcome


def test_a_wait_value_that_is_not_seconds_says_how_to_write_it(config_file: Path) -> None:
    run = otpagent("send", "--to", "+447700900123", "--wait", "hello", config=config_file)

    assert run.returncode == 2
    assert "write --wait=SECONDS, or put --wait after the message text" in run.stderr
