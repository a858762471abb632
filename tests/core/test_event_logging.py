"""The log sink writes through the standard logging module, so the host application decides."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from otpagent import IntelligentOTPAgent
from otpagent.errors import ConfigError
from otpagent.model import Event
from otpagent.sinks.log import LogSink, create_log_sink
from tests.conftest import agent_config


def test_events_reach_the_host_applications_handler(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="otpagent.events")
    config = agent_config(tmp_path, sinks=[{"plugin": "log"}])

    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        message_id = agent.send_message({"phone_number": "+447700900123", "content": "hello"})
        assert agent.wait_until_idle(30)

    ours = [r for r in caplog.records if r.name == "otpagent.events"]
    sent = [r for r in ours if r.otpagent_event["event"] == "message_sent"]  # type: ignore[attr-defined]
    assert sent and sent[0].otpagent_event["message_id"] == message_id  # type: ignore[attr-defined]
    assert sent[0].levelno == logging.INFO
    assert f"message_id='{message_id}'" in sent[0].getMessage()


def test_problem_events_log_at_warning_and_the_threshold_filters_the_rest() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("otpagent.events.test-threshold")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Keep())
    sink = LogSink(level=logging.WARNING, fmt="json", logger=logger)

    for kind in ("attempt", "sent", "failed", "expired"):
        sink.emit(Event(type=kind, message_id="m1", data={"channel": "SMS"}))

    assert [r.otpagent_event["event"] for r in records] == ["message_failed", "message_expired"]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.WARNING for r in records)
    assert records[0].getMessage().startswith("{")


@pytest.mark.parametrize("level", ["INFO", "Warning", "debug"])
def test_sink_level_names_are_case_insensitive(level: str) -> None:
    assert create_log_sink({"plugin": "log", "level": level}, None)  # type: ignore[arg-type]


def test_an_unknown_sink_level_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"sinks\[\]\.level: must be one of debug, info, warning, error"):
        create_log_sink({"plugin": "log", "level": "loud"}, None)  # type: ignore[arg-type]


def test_an_embedding_app_that_configures_no_logging_gets_no_event_lines(tmp_path: Path) -> None:
    script = f"""
import json
from otpagent import IntelligentOTPAgent
from tests.conftest import agent_config
from pathlib import Path
config = agent_config(Path({str(tmp_path)!r}), sinks=[{{"plugin": "log"}}])
with IntelligentOTPAgent(config) as agent:
    agent.start_processing()
    agent.send_message({{"phone_number": "+447700900123", "content": "hello"}})
    assert agent.wait_until_idle(30)
print("done")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "message_sent" not in result.stderr  # a library does not print behind the host's back


def test_the_cli_renders_event_lines_itself(tmp_path: Path) -> None:
    import json

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(agent_config(tmp_path, sinks=[{"plugin": "log"}])))
    result = subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config_file), "--log-level", "INFO",
                             "send", "--to", "+447700900123", "hello"],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "message_queued" in result.stderr
