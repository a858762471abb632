"""Config checked by cattrs (otpagent.settings): strict types, unknown keys named, every mistake
in one run, and the whole config published as JSON Schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest

from otpagent import IntelligentOTPAgent
from otpagent.config import parse_config
from otpagent.config_schema import config_schema
from otpagent.errors import ConfigError
from otpagent.plugins import build_registry
from otpagent.settings import describes, json_schema, setting, settings_class_of, structure

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class Limit:
    per_second: float = setting(gt=0)
    burst: int = setting(1, ge=1)


@attrs.frozen
class Section:
    name: str = setting(min_length=1)
    sender: str | None = setting(None, key="from", pattern=r"\+[0-9]{7,15}", pattern_reason="expected E.164")
    enabled: bool = setting(True)
    limit: Limit | None = None
    tags: tuple[str, ...] = ()
    token: str | None = setting(None, secret=True)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if not self.enabled and self.token is not None:
            yield "token", "is unused while the section is disabled"


def _errors(data: Any, path: str = "channels.sms") -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        structure(Section, data, path=path)
    return {e.path: e.reason for e in caught.value.errors}


def test_a_valid_section_is_structured_with_defaults_and_the_json_key_renamed():
    got = structure(Section, {"name": "a", "from": "+447700900123", "limit": {"per_second": 2}, "tags": ["x"]})
    assert got == Section(name="a", sender="+447700900123", limit=Limit(2.0, 1), tags=("x",))
    assert isinstance(got.limit.per_second, float)  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "reason"), [
    ({"name": "a", "enabled": 1}, "must be true or false, got 1"),
    ({"name": "a", "limit": {"per_second": True}}, "must be a number, got True"),
    ({"name": "a", "limit": {"per_second": 1, "burst": "5"}}, "must be an integer, got a string"),
    ({"name": "a", "limit": {"per_second": 1, "burst": 2.5}}, "must be an integer, got 2.5"),
    ({"name": "a", "tags": "ab"}, "must be a JSON array, got a string"),
    ({"name": 5}, "must be a string, got 5"),
])
def test_types_are_strict(value, reason):
    assert reason in _errors(value).values()


def test_every_mistake_is_named_by_its_key_path_in_one_run():
    errors = _errors({"name": "", "from": "x", "enabled": "yes", "limit": {"per_second": 0, "brust": 2},
                      "tags": ["a", 3], "nmae": "b"})
    assert errors == {
        "channels.sms.name": "must not be empty",
        "channels.sms.from": "expected E.164, got 'x'",
        "channels.sms.enabled": "must be true or false, got a string",
        "channels.sms.limit.per_second": "must be positive",
        "channels.sms.limit.brust": "unknown key (did you mean 'burst'? expected one of burst, per_second)",
        "channels.sms.tags[1]": "must be a string, got 3",
        "channels.sms.nmae": "unknown key (did you mean 'name'? expected one of enabled, from, limit, name, "
                             "tags, token)",
    }


@pytest.mark.parametrize(("config", "reason"), [
    ({"otp": {"ttl_seconds": 0}}, "must be positive and at most 600"),
    ({"otp": {"length": 11}}, "must be from 4 to 10"),
    ({"retry": {"max_attempts": 0}}, "must be at least 1"),
    ({"cleanup": {"retain_days": -1}}, "must be non-negative"),
    ({"circuit": {"error_rate": 0}}, "must be in (0, 1]"),
])
def test_limits_say_what_is_allowed(config, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config(config, environ={})
    assert caught.value.reason == reason


def test_missing_keys_non_objects_and_checks_across_fields():
    assert _errors({}) == {"channels.sms.name": "missing: this key must be set"}
    assert _errors({"name": None}) == {"channels.sms.name": "missing: this key must be set"}
    assert _errors([1]) == {"channels.sms": "must be a JSON object, got a list"}
    assert _errors({"name": "a", "enabled": False, "token": "t" * 20}) == {
        "channels.sms.token": "is unused while the section is disabled"}


def test_a_secret_is_never_echoed_nor_in_the_repr():
    secret = "sk_live_abcdefghijklmnop"
    with pytest.raises(ConfigError) as caught:
        structure(Section, {"name": "a", "token": 123456, "from": secret})
    assert secret not in str(caught.value) or "from" in str(caught.value)
    got = structure(Section, {"name": "a", "token": secret})
    assert secret not in repr(got)
    with pytest.raises(ConfigError) as caught:
        structure(Section, {"name": "a", "enabled": secret})
    assert secret not in str(caught.value)


def test_parse_config_reports_every_mistake_including_the_server_section():
    with pytest.raises(ConfigError) as caught:
        parse_config({"retry": {"max_attempts": 0}, "otp": {"length": 2, "lenght": 6},
                      "dispatcher": {"workers": True}, "server": {"port": 70000, "api_keys": ["short"]},
                      "sinks": [{"plugin": "log"}, {}],
                      "channels": {"a": {"plugin": "console", "weight": 0}, "b": {"plugin": "console", "cost": "1"}}},
                     environ={})
    assert {e.path for e in caught.value.errors} == {
        "retry.max_attempts", "otp.length", "otp.lenght", "dispatcher.workers", "server.port",
        "sinks[1].plugin", "channels.a.weight", "channels.b.cost"}
    assert "did you mean 'length'?" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"limits": {"otp_send_per_ip": {"per_minute": 0}, "otp_verify_per_kye": None,
                                            "otp_verify_per_recipient": {"per_minute": 1}}}}, environ={})
    assert [(e.path, e.reason[:50]) for e in caught.value.errors] == [
        ("server.limits.otp_verify_per_recipient", "no longer exists: remove it. Anyone could spend a "),
        ("server.limits.otp_verify_per_kye", "unknown key (did you mean 'otp_verify_per_key'? ex"),
        ("server.limits.otp_send_per_ip.per_minute", "must be a positive number")]
    # Checks beyond a key's type run once the keys themselves are right.
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"api_keys": ["short", "sha256:abc"]}}, environ={})
    assert {e.path for e in caught.value.errors} == {"server.api_keys[0]", "server.api_keys[1]"}


def test_the_server_limits_default_to_the_documented_figures():
    from otpagent.server.settings import _DEFAULT_LIMITS, Limit, parse_server_settings

    limits = parse_server_settings({}).limits
    assert limits == {name: Limit(60.0 / rate, burst) for name, (rate, burst) in _DEFAULT_LIMITS.items()}


def test_config_check_reports_every_error_with_its_key_path(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"retry": {"max_attempts": 0}, "server": {"port": "80"},
                                  "channels": {"x": {"plugin": "console", "outbx": "o.jsonl"},
                                               "y": {"plugin": "console", "fail_rate": 2}}}))
    run = subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config), "config", "check", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    error = json.loads(run.stdout)["error"]
    assert error["kind"] == "config"
    assert [e["field"] for e in error["errors"]] == ["retry.max_attempts", "server.port"]
    assert "2 config errors:" in run.stderr
    assert "config error at server.port: must be a port number from 0 to 65535, got a string" in run.stderr
    # Once the core's sections are right, every channel's plugin mistakes come in one run too.
    config.write_text(json.dumps({"storage": {"path": str(tmp_path / "a.db")},
                                  "otp": {"key_file": str(tmp_path / "k.key")},
                                  "channels": {"x": {"plugin": "console", "outbx": "o.jsonl"},
                                               "y": {"plugin": "console", "fail_rate": 2}}}))
    run = subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config), "config", "check", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert [(e["field"], e["reason"][:40]) for e in json.loads(run.stdout)["error"]["errors"]] == [
        ("channels.x.outbx", "unknown key (did you mean 'outbox'? expe"),
        ("channels.y.fail_rate", "rates add up to more than 1")]


def test_a_plugin_describes_its_section_and_the_schema_has_it():
    @describes(Section)
    def factory(spec: Any) -> None:
        return None

    assert settings_class_of(factory) is Section
    schema = json_schema(Section)
    assert re.search(schema["properties"]["from"]["pattern"], "+447700900123")
    assert re.search(schema["properties"]["from"]["pattern"], "${SENDER}")
    assert not re.search(schema["properties"]["from"]["pattern"], "07700 900123")
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert "default" not in schema["properties"]["token"]


def _schema() -> dict[str, Any]:
    return config_schema(build_registry(warn=False))


def _doc_configs() -> list[tuple[str, dict[str, Any]]]:
    """The config.json examples shipped in the docs and README (JSON blocks naming config sections)."""
    sections = {"storage", "routing", "channels", "otp", "retry", "dispatcher", "sinks", "server", "circuit"}
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, block in enumerate(re.findall(r"```json\n(.*?)```", doc.read_text(), re.S)):
            try:
                data = json.loads(block)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and set(data) & sections and '"..."' not in block:  # not elided
                found.append((f"{doc.relative_to(ROOT)}#{i}", data))
    return found


def test_the_default_and_the_documented_configs_validate_against_the_schema():
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    configs = [("embedded default", {}), *_doc_configs()]
    assert len(configs) > 3
    for where, config in configs:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
        assert errors == [], where
        # The schema agrees with the checks: what it accepts, parse_config accepts too.
        names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", json.dumps(config))
        parse_config(config, environ=dict.fromkeys(names, "s" * 32))


@pytest.mark.parametrize("config", [
    {"colour": "blue"},
    {"otp": {"lenght": 6}},
    {"server": {"cors": True}},
    {"dispatcher": {"workers": True}},
    {"otp": {"length": 11}},
    {"channels": {"dev": {"plugin": "console", "outbx": "o.jsonl"}}},  # the console plugin's own keys
    {"storage": {"pth": "a.db"}},  # the default backend's keys, with no backend named
    {"routing": {"load_balance": "yes"}},
])
def test_the_schema_rejects_what_the_checks_reject(config, tmp_path):
    assert list(jsonschema.Draft202012Validator(_schema()).iter_errors(config))
    with pytest.raises(ConfigError):
        IntelligentOTPAgent({"storage": {"path": str(tmp_path / "a.db")}, **config})


def test_otpagent_config_schema_prints_the_schema(tmp_path):
    run = subprocess.run([sys.executable, "-m", "otpagent.cli", "config", "schema"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    schema = json.loads(run.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["otp"]["properties"]["length"] == {
        "type": "integer", "minimum": 4, "maximum": 10, "description": "Digits in a code", "default": 6}
    console = [case for case in schema["properties"]["channels"]["additionalProperties"]["allOf"]
               if case["if"]["properties"]["plugin"] == {"const": "console"}]
    assert "outbox" in console[0]["then"]["properties"] and "weight" in console[0]["then"]["properties"]


def test_several_config_errors_survive_pickling_intact():
    import pickle

    with pytest.raises(ConfigError) as caught:
        parse_config({"retry": {"max_attempts": 0}, "otp": {"length": 2}}, environ={})
    again = pickle.loads(pickle.dumps(caught.value))
    assert [(e.path, e.reason) for e in again.errors] == [(e.path, e.reason) for e in caught.value.errors]
    assert str(again) == str(caught.value) and again.path == "otp.length"


def test_cattrs_is_imported_only_when_a_section_is_checked(tmp_path):
    code = ("import sys, otpagent\nfrom otpagent.plugins import build_registry\nbuild_registry(warn=False)\n"
            "print('cattrs' in sys.modules)\n"
            "otpagent.IntelligentOTPAgent({'storage': {'backend': 'memory'}}).close()\nprint('cattrs' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.stdout.split() == ["False", "True"], run.stderr


def test_the_original_agent_config_section_is_honoured_and_checked():
    cfg = parse_config({"agent_config": {"database_path": "legacy.db", "max_workers": 3}}, environ={})
    assert (cfg.storage["path"], cfg.dispatcher.workers) == ("legacy.db", 3)
    cfg = parse_config({"agent_config": {"database_path": "legacy.db"}, "storage": {"path": "new.db"}}, environ={})
    assert cfg.storage["path"] == "new.db"
    with pytest.raises(ConfigError) as caught:
        parse_config({"agent_config": {"max_workers": 0, "workers": 2}}, environ={})
    assert {e.path for e in caught.value.errors} == {"agent_config.max_workers", "agent_config.workers"}
