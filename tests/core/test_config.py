"""config.json: interpolation, the original shape, and errors that name the key path."""

from __future__ import annotations

import json

import pytest

from otpagent import ConfigError, IntelligentOTPAgent, PluginNotFound
from otpagent.config import load_config, parse_config
from otpagent.plugins import Registry


def test_env_variables_are_interpolated_and_a_missing_one_is_named():
    cfg = parse_config({"channels": {"DEV": {"plugin": "console", "kind": "sms", "outbox": "${OUTBOX}"}}},
                       environ={"OUTBOX": "out.jsonl"})
    assert cfg.channels[0].settings["outbox"] == "out.jsonl"
    with pytest.raises(ConfigError) as exc:
        parse_config({"channels": {"SMS": {"api_config": {"auth_token": "${TWILIO_AUTH_TOKEN}"}}}}, environ={})
    assert "TWILIO_AUTH_TOKEN" in str(exc.value) and "channels.SMS.api_config.auth_token" in str(exc.value)


def test_env_default_syntax_is_supported():
    cfg = parse_config({"storage": {"path": "${DB:-fallback.db}"}}, environ={})
    assert cfg.storage["path"] == "fallback.db"


def test_original_shape_maps_channel_names_to_default_plugins():
    cfg = parse_config({"channels": {
        "SMS": {"api_config": {"account_sid": "AC1", "auth_token": "t"}},
        "WhatsApp": {"api_config": {}}, "Call": {"api_config": {}}, "Email": {"api_config": {"api_key": "k"}},
    }}, environ={})
    assert [c.plugin for c in cfg.channels] == ["twilio-sms", "twilio-whatsapp", "twilio-voice", "sendgrid-email"]


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"retry": {"max_attempts": "five"}}, "retry.max_attempts"),
        ({"retry": {"max_atempts": 3}}, "retry.max_atempts"),
        ({"otp": {"ttl_seconds": 3600}}, "otp.ttl_seconds"),
        ({"otp": {"message": "no placeholder"}}, "otp.message"),
        ({"channels": {"X": {"plugin": "console", "cost": -1}}}, "channels.X.cost"),
        ({"channels": {"X": {"plugin": "console", "kind": "fax"}}}, "channels.X.kind"),
        ({"channels": {"X": {"plugin": "console", "rate_limit": {"per_second": 0}}}},
         "channels.X.rate_limit.per_second"),
        ({"channels": {"PIGEON": {}}}, "channels.PIGEON.plugin"),
        ({"sinks": {"plugin": "log"}}, "sinks"),
        ({"colour": "blue"}, "colour"),
        ({"otp": {"global_per_minute": "lots"}}, "otp.global_per_minute"),
        ({"otp": {"secret": "short"}}, "otp.secret"),
        ({"otp": {"lockout_seconds": 900}}, "otp.lockout_seconds"),
        ({"otp": {"key_file": ""}}, "otp.key_file"),
        ({"otp": {"key_file": "k.key", "secret": "s" * 20}}, "otp.key_file"),
        ({"otp": {"global_failures_per_minute": 0}}, "otp.global_failures_per_minute"),
        ({"otp": {"global_failures_per_minute": "many"}}, "otp.global_failures_per_minute"),
    ],
)
def test_validation_errors_name_the_key_path(config, path):
    with pytest.raises(ConfigError) as exc:
        parse_config(config, environ={})
    assert exc.value.path == path


def test_the_removed_lockout_says_what_replaced_it():
    with pytest.raises(ConfigError) as exc:
        parse_config({"otp": {"lockout_seconds": 900}}, environ={})
    assert "no longer exists: remove it" in exc.value.reason
    assert "against the live code (otp.max_attempts per code" in exc.value.reason


def test_the_global_failure_guard_is_on_by_default_and_null_turns_it_off():
    assert parse_config({}, environ={}).otp.global_failures_per_minute == 600
    assert parse_config({"otp": {"global_failures_per_minute": None}}, environ={}).otp.global_failures_per_minute \
        is None


def test_an_otp_secret_from_the_environment_must_be_long_enough(make_agent, monkeypatch):
    monkeypatch.setenv("OTPAGENT_OTP_SECRET", "short")
    with pytest.raises(ConfigError) as exc:
        make_agent()
    assert exc.value.path == "otp.secret"
    assert "OTPAGENT_OTP_SECRET must hold at least 16 characters" in exc.value.reason


def test_channel_plugin_keys_are_checked_by_the_plugin(tmp_path):
    with pytest.raises(ConfigError) as exc:
        IntelligentOTPAgent({"storage": {"path": str(tmp_path / "a.db")},
                             "channels": {"DEV": {"plugin": "console", "kind": "sms", "outbx": "x"}}})
    assert exc.value.path == "channels.DEV.outbx"


def test_unknown_plugin_says_which_package_to_install():
    with pytest.raises(PluginNotFound) as exc:
        Registry().lookup("channels", "twilio-sms", "channels.SMS.plugin")
    assert "pip install otpagent-twilio" in str(exc.value) and exc.value.path == "channels.SMS.plugin"
    with pytest.raises(PluginNotFound, match=r"postgres.*pip install otpagent-postgres"):
        Registry().lookup("storage_backends", "postgres", "storage.backend")


def test_malformed_config_file_names_the_position(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"storage": {"path": "a.db",}}')
    with pytest.raises(ConfigError, match="malformed JSON at line 1"):
        load_config(path)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "config.json"
    path.write_text(json.dumps({"storage": {"path": "data/otp.db"}, "sinks": [],
                                "channels": {"DEV": {"plugin": "console", "kind": "sms", "quiet": True}}}))
    with IntelligentOTPAgent(str(path)) as agent:
        assert agent.storage.path == tmp_path / "conf" / "data" / "otp.db"


def test_no_config_is_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTPAGENT_CONFIG", raising=False)
    with IntelligentOTPAgent() as agent:
        assert agent.storage.name == "sqlite"
        assert sorted(c.kind for c in agent.channels.values()) == ["email", "sms", "voice", "whatsapp"]
    assert (tmp_path / "otpagent.db").exists()
