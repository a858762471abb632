"""Shared fixtures: agents on a temporary SQLite file with quiet console channels."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent


def console_channels(outbox: Path, **extra: dict[str, Any]) -> dict[str, Any]:
    base = {"plugin": "console", "quiet": True, "outbox": str(outbox)}
    channels = {kind: {**base, "kind": kind} for kind in ("voice", "sms", "whatsapp", "email")}
    for name, section in extra.items():
        channels[name] = {**base, **section}
    return channels


def agent_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A config on files under ``tmp_path``, the OTP key file included (a config built from a
    dict would otherwise keep it in the working directory, the repository's root).

    An ``otp`` override keeps that key file unless it sets ``secret`` or ``key_file`` itself.
    """
    key_file = {"key_file": str(tmp_path / "otpagent.key")}
    otp = overrides.pop("otp", {})
    config: dict[str, Any] = {
        "storage": {"backend": "sqlite", "path": str(tmp_path / "otpagent.db")},
        "otp": otp if "secret" in otp or "key_file" in otp else {**key_file, **otp},
        "channels": console_channels(tmp_path / "outbox.jsonl"),
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
        "dispatcher": {"workers": 4, "poll_interval_seconds": 0.05},
        "sinks": [],
        # Deterministic channel order within a kind (tests name a primary by weight).
        "routing": {"strategy": "priority", "load_balance": False},
    }
    for key, value in overrides.items():
        config[key] = value
    return config


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _otp_keys_stay_in_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests run with ``OTPAGENT_OTP_SECRET`` unset unless they set it (so the key file is what
    they exercise), and none may leave an OTP key file in the repository: a config built from
    a dict keeps it in the working directory unless it says otherwise."""
    monkeypatch.delenv("OTPAGENT_OTP_SECRET", raising=False)
    stray = ROOT / "otpagent.key"
    existed = stray.exists()
    yield
    if stray.exists() and not existed:
        stray.unlink()
        pytest.fail(f"this test created the OTP key file {stray}: give its config otp.key_file under tmp_path "
                    "(tests.conftest.agent_config does)", pytrace=False)


class Outbox:
    """What the console channels 'sent', read from their JSON-lines outbox."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        # A line being appended right now may be read half-written: only newline-terminated
        # lines are complete (the text after the last newline is dropped).
        complete = self.path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in complete if line]

    def for_message(self, message_id: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["message_id"] == message_id]

    def code_for(self, message_id: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.for_message(message_id)
            if sent:
                return "".join(ch for ch in sent[-1]["body"].split("code is ")[1][:12] if ch.isdigit())
            time.sleep(0.01)
        raise AssertionError(f"message {message_id} never reached the outbox")


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.jsonl")


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., IntelligentOTPAgent]]:
    agents: list[IntelligentOTPAgent] = []

    def make(**overrides: Any) -> IntelligentOTPAgent:
        clock = overrides.pop("clock", time.time)
        agent = IntelligentOTPAgent(agent_config(tmp_path, **overrides), clock=clock)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded; never an unbounded sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


#: ``python -c`` code running ``otpagent`` with ``otpagent.gcsettle.settle`` reporting the
#: collector's state on standard error once it has run (tests of ``run`` and ``serve``).
SETTLE_REPORTING_CLI = """
import gc, sys
import otpagent.gcsettle as gcsettle
settle = gcsettle.settle
def reporting():
    settle()
    print(f"settled {gc.get_threshold()} frozen={gc.get_freeze_count()}", file=sys.stderr, flush=True)
gcsettle.settle = reporting
from otpagent.cli import main
sys.argv[0] = "otpagent"
main()
"""


def run_until_sent(command: list[str], outbox: Path, timeout: float = 30.0) -> tuple[int, str]:
    """Start a worker process (``otpagent run``), wait until it has written to the console
    channel's ``outbox``, stop it with SIGTERM; its exit code and standard error."""
    import signal
    import subprocess

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: outbox.exists() and bool(outbox.read_text()), timeout=timeout, interval=0.05)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=timeout)
    return process.returncode, err


class FakeClock:
    """A clock the test moves by hand (starts at real time so timestamps look normal)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
