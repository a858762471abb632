"""The collector settings of the long-running processes otpagent owns (otpagent.gcsettle).

Each check runs in a process of its own: the settings are process-wide, and this test process
must keep CPython's defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from otpagent.gcsettle import THRESHOLDS
from tests.conftest import SETTLE_REPORTING_CLI, agent_config, run_until_sent


def test_settle_freezes_start_up_and_raises_the_thresholds() -> None:
    code = ("import gc, json; from otpagent.gcsettle import settle; import otpagent; "
            "before = gc.get_threshold(); settle(); "
            "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    before, after, frozen = json.loads(done.stdout)

    assert tuple(before) == (700, 10, 10), "the process starts on CPython's defaults"
    assert tuple(after) == THRESHOLDS
    assert frozen > 10_000, "what start-up built (the library, its imports) is frozen"


def test_importing_otpagent_changes_nothing() -> None:
    code = ("import gc, json, otpagent, otpagent.gcsettle; "
            "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)

    assert json.loads(done.stdout) == [[700, 10, 10], 0]


def test_otpagent_run_settles_before_it_works_the_queue(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(agent_config(tmp_path)))
    subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config), "send", "--to", "+447700900123",
                    "settled and sent"], check=True, capture_output=True, timeout=60)
    outbox = tmp_path / "outbox.jsonl"
    command = [sys.executable, "-c", SETTLE_REPORTING_CLI, "--config", str(config), "run"]
    returncode, err = run_until_sent(command, outbox)

    assert returncode == 0, err
    assert "settled and sent" in outbox.read_text()
    assert f"settled {THRESHOLDS}" in err
    assert err.index("settled") < err.index("running"), "settled before the workers start"
