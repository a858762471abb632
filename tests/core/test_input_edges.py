"""Inputs at the edge of what is valid: each gets a clear error naming the field, nothing written.

Each test here reproduces a finding of issue 14 (tried as a user and as an attacker would).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from otpagent import IntelligentOTPAgent, InvalidRequest, MessageRequest
from otpagent.config import load_config, locate_config, parse_config
from otpagent.errors import ConfigError
from otpagent.sinks.webhook_settings import parse_webhook_settings
from otpagent.sinks.webhook_target import check_url
from tests.conftest import agent_config

LONE = "\ud800"


@pytest.fixture
def new_york() -> Iterator[None]:
    """Run the test with the process's local time zone set to America/New_York."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_naive_scheduled_for_is_local_time_as_python_reads_it(new_york: None) -> None:
    local_in_two_hours = datetime.now() + timedelta(hours=2)

    request = MessageRequest(phone_number="+447700900123", content="x", scheduled_for=local_in_two_hours)

    assert request.scheduled_for == pytest.approx(local_in_two_hours.timestamp())
    assert request.scheduled_for == pytest.approx(time.time() + 7200, abs=60)


def test_a_naive_iso_string_is_local_time_too(new_york: None) -> None:
    text = (datetime.now() + timedelta(hours=2)).replace(microsecond=0).isoformat()

    request = MessageRequest(phone_number="+447700900123", content="x", scheduled_for=text)

    assert request.scheduled_for == pytest.approx(datetime.fromisoformat(text).timestamp())


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, time.time() * 1000, -5.0])
def test_absurd_scheduled_times_are_refused(value: float) -> None:
    with pytest.raises(InvalidRequest) as exc:
        MessageRequest(phone_number="+447700900123", content="x", scheduled_for=value)
    assert "scheduled_for" in str(exc.value)


def test_a_date_in_the_year_9999_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"scheduled_for.*a century ahead"):
        MessageRequest(phone_number="+447700900123", content="x", scheduled_for=datetime(9999, 12, 31))


@pytest.mark.parametrize("field", ["content", "subject", "user_id", "idempotency_key", "preferred_channel"])
def test_a_lone_surrogate_is_refused_naming_the_field(field: str) -> None:
    fields = {"phone_number": "+447700900123", "content": "hello", field: f"ab{LONE}"}

    with pytest.raises(InvalidRequest) as exc:
        MessageRequest(**fields)

    assert exc.value.errors[0].field == field
    assert "unpaired surrogate U+D800 at position 2" in str(exc.value)


def test_a_lone_surrogate_in_metadata_is_refused_naming_the_key() -> None:
    with pytest.raises(InvalidRequest, match=r"metadata\.note: is not valid Unicode"):
        MessageRequest(phone_number="+447700900123", content="x", metadata={"note": LONE})


@pytest.mark.parametrize(("metadata", "needle"), [
    ({"tags": {"a", "b"}}, "metadata.tags: must be JSON data"),
    ({"score": math.nan}, "metadata.score: must be a finite number"),
    ({str(i): i for i in range(51)}, "at most 50"),
    ({"deep": json.loads("[" * 20 + "]" * 20)}, "nested more than"),
])
def test_metadata_must_be_json_that_can_be_stored(metadata: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        MessageRequest(phone_number="+447700900123", content="x", metadata=metadata)


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "line one\nline two", "carriage\rreturn"])
def test_a_subject_with_cr_or_lf_is_refused(subject: str) -> None:
    with pytest.raises(InvalidRequest, match="subject: must be a single line"):
        MessageRequest(email="ada@example.com", content="x", subject=subject)


def test_bad_input_through_the_agent_writes_nothing(tmp_path: Path) -> None:
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        with pytest.raises(InvalidRequest, match=r"\[1\]\.content"):
            agent.send_bulk_messages([{"phone_number": "+447700900123", "content": "fine"},
                                      {"phone_number": "+447700900124", "content": f"x{LONE}"}])
        assert agent.get_metrics()["database_stats"]["total_messages"] == 0


def test_verify_otp_refuses_arguments_that_are_not_text(tmp_path: Path) -> None:
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        with pytest.raises(InvalidRequest, match="recipient: must be a non-empty string"):
            agent.verify_otp(None, None)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="code: is not valid Unicode"):
            agent.verify_otp("+447700900123", f"12{LONE}456")
        with pytest.raises(InvalidRequest, match="recipient: is not valid Unicode"):
            agent.verify_otp(f"+4477{LONE}", "123456")
        assert agent.verify_otp("not a number", "123456") == (False, "invalid")  # no oracle on format


def test_a_deeply_nested_json_file_is_refused_cleanly(tmp_path: Path) -> None:
    file = tmp_path / "deep.json"
    file.write_text("[" * 100_000 + "]" * 100_000)

    with IntelligentOTPAgent(agent_config(tmp_path)) as agent, \
            pytest.raises(InvalidRequest, match=r"file: deep\.json: the JSON document is nested too deeply"):
        agent.load_messages_from_json(file)


def test_a_one_byte_webhook_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.secret: .*too short: 1 bytes"):
        parse_webhook_settings({"plugin": "webhook", "url": "https://hooks.example.com/x", "secret": "whsec_AQ=="},
                               "sinks[0].")


@pytest.mark.parametrize("host", ["100.64.0.1", "100.127.255.254", "192.0.0.1", "198.18.0.1", "[::ffff:10.0.0.1]",
                                  "127.0.0.1", "169.254.169.254", "10.1.2.3", "[fd00::1]", "0.0.0.0"])
def test_webhook_urls_must_point_at_globally_routable_addresses(host: str) -> None:
    with pytest.raises(ConfigError, match="not globally routable"):
        check_url(f"https://{host}/hook", allow_private=False, path="sinks[0].url")


def test_a_public_webhook_address_is_accepted() -> None:
    assert check_url("https://8.8.8.8/hook", allow_private=False, path="sinks[0].url")


def test_no_secret_appears_in_the_repr_of_a_loaded_config() -> None:
    secrets = {"dsn-password": "hunter2hunter2", "auth": "twilio-token-123", "sg": "SG.sendgrid-key",
               "api": "api-key-0123456789", "hook": "whsec_" + "A" * 40, "otp": "o" * 24}
    config = parse_config({
        "storage": {"backend": "postgres", "dsn": f"postgresql://app:{secrets['dsn-password']}@db/otp"},
        "channels": {"SMS": {"api_config": {"account_sid": "AC1", "auth_token": secrets["auth"],
                                            "from": "+15005550006"}},
                     "EMAIL": {"api_config": {"api_key": secrets["sg"], "from": "a@example.com"}}},
        "server": {"api_keys": [secrets["api"]]},
        "sinks": [{"plugin": "webhook", "url": "https://hooks.example.com", "secret": secrets["hook"]}],
        "otp": {"secret": secrets["otp"]},
    })

    text = repr(config)

    for value in secrets.values():
        assert value not in text
    assert "AC1" in text  # the shape stays useful for debugging


def test_the_config_is_found_in_the_documented_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTPAGENT_CONFIG", raising=False)
    assert locate_config() == (None, "embedded default")

    (tmp_path / "config.json").write_text(json.dumps({"retry": {"max_attempts": 2}}))
    assert locate_config() == (tmp_path / "config.json", "./config.json")
    assert load_config().retry.max_attempts == 2

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"retry": {"max_attempts": 3}}))
    monkeypatch.setenv("OTPAGENT_CONFIG", str(other))
    assert load_config().retry.max_attempts == 3
    assert load_config(tmp_path / "config.json").retry.max_attempts == 2


def test_a_bare_agent_reads_config_json_in_the_working_directory(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTPAGENT_CONFIG", raising=False)
    (tmp_path / "config.json").write_text(json.dumps(agent_config(tmp_path, retry={"max_attempts": 4})))

    with IntelligentOTPAgent() as agent:
        assert agent.config.retry.max_attempts == 4


def test_a_channel_spec_handed_to_a_plugin_keeps_its_credentials_out_of_its_repr(tmp_path: Path) -> None:
    from otpagent.protocols import ChannelSpec, PluginContext

    spec = ChannelSpec(name="SMS", plugin="acme", kind="sms", cost=None, context=PluginContext(config_dir=tmp_path),
                       settings={"api_config": {"token": "tok-123-secret"}}, api_config={"token": "tok-123-secret"})

    assert "tok-123-secret" not in repr(spec) and "token" in repr(spec)


def test_report_attempts_is_the_number_of_attempts_as_the_original_api_prints_it(tmp_path: Path) -> None:
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        agent.start_processing()
        message_id = agent.send_otp("+447700900123", user_id="user123")
        assert agent.wait_until_idle(30)
        report = agent.get_delivery_report(message_id)

    assert f"Attempts: {report.attempts}" == "Attempts: 1"
    assert [a.outcome.value for a in report.attempt_log] == ["accepted"]
    data = report.to_dict()
    assert data["attempt_count"] == 1 and data["attempts"][0]["outcome"] == "accepted"
