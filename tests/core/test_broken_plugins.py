"""No installed plugin can break otpagent: real broken packages, installed with pip, driven
through the ``otpagent`` command line.

A plugin that fails to import or raises while registering is listed by ``otpagent plugins``
with why and where, costs every other command one warning line, and fails ``config check``
only when the config needs it. A name registered twice is an error naming both distributions.
A factory that returns the wrong thing fails ``config check`` at the config key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import agent_config
from tests.core.broken_plugins import install_broken_plugins


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_broken_plugins(tmp_path_factory.mktemp("broken-plugins"))


def otpagent(site: Path, load: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line with the broken packages importable and ``load`` selecting plugins."""
    env = {k: v for k, v in os.environ.items() if k != "OTPAGENT_CONFIG"}
    env.update(PYTHONPATH=str(site), OTPAGENT_LOAD_PLUGINS=load)
    cmd = [sys.executable, "-m", "otpagent.cli", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(agent_config(tmp_path, **overrides)))
    return path


def listing(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {row["name"]: row for row in json.loads(run.stdout)}


IMPORT_FAILURES = "console,acme-importfail,acme-syntax,acme-typo"


def test_plugins_lists_what_failed_to_import_with_why_and_where(site):
    run = otpagent(site, IMPORT_FAILURES, "plugins", "--json")

    assert run.returncode == 0, run.stderr
    rows = listing(run)
    assert rows["console"]["status"] == "loaded"
    missing = rows["acme-importfail"]
    assert (missing["status"], missing["package"], missing["version"], missing["phase"]) == (
        "failed", "acme-importfail", "0.3.0", "importing")
    assert missing["error"] == "ModuleNotFoundError: No module named 'acme_sdk_not_installed'"
    assert str(missing["where"]).endswith(f"acme_importfail{os.sep}__init__.py:2")
    syntax = rows["acme-syntax"]
    assert str(syntax["error"]).startswith("SyntaxError:")
    assert str(syntax["where"]).endswith(f"acme_syntax{os.sep}__init__.py:3")
    assert "otpagent_register_chanels" in str(rows["acme-typo"]["error"])
    assert "3 plugin(s) failed to load" in run.stderr


def test_plugins_table_marks_failures_and_check_flag_exits_non_zero(site):
    table = otpagent(site, IMPORT_FAILURES, "plugins")
    strict = otpagent(site, IMPORT_FAILURES, "plugins", "--check")
    clean = otpagent(site, "console", "plugins", "--check")

    assert table.returncode == 0 and "FAILED" in table.stdout and "ModuleNotFoundError" in table.stdout
    assert "Traceback" not in table.stderr
    assert strict.returncode == 1
    assert clean.returncode == 0, clean.stderr


def test_other_commands_work_and_warn_once_per_failed_plugin(site, tmp_path):
    config = write_config(tmp_path)

    sent = otpagent(site, IMPORT_FAILURES, "send", "--to", "+447700900123", "hello", config=config)
    stats = otpagent(site, IMPORT_FAILURES, "stats", "--json", config=config)

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip()
    assert stats.returncode == 0 and json.loads(stats.stdout)["queue_size"] == 1
    for run in (sent, stats):
        assert "Traceback" not in run.stderr
        lines = run.stderr.splitlines()
        for plugin in ("acme-importfail", "acme-syntax", "acme-typo"):
            [line] = [line for line in lines if f"plugin='{plugin}'" in line]
            assert "WARNING" in line and "plugin_failed" in line
        assert len(lines) == 3, run.stderr


def test_config_check_passes_when_the_config_does_not_need_the_failed_plugin(site, tmp_path):
    run = otpagent(site, IMPORT_FAILURES, "config", "check", config=write_config(tmp_path))

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("config OK")
    assert ("warning: plugin 'acme-importfail' (acme-importfail 0.3.0) failed while importing: "
            "ModuleNotFoundError: No module named 'acme_sdk_not_installed'") in run.stderr
    assert "this config does not use it" in run.stderr


def test_config_check_fails_naming_the_failed_plugin_the_config_needs(site, tmp_path):
    config = write_config(tmp_path, channels={"SMS": {"plugin": "acme-importfail", "kind": "sms"}})

    run = otpagent(site, IMPORT_FAILURES, "config", "check", config=config)

    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("error: config error at channels.SMS.plugin: the channel 'acme-importfail' is not "
                           "available: plugin 'acme-importfail' (acme-importfail 0.3.0) failed while importing: "
                           "ModuleNotFoundError: No module named 'acme_sdk_not_installed' (at ")


def test_a_plugin_that_raises_while_registering_is_dropped_whole_and_named_when_needed(site, tmp_path):
    listed = otpagent(site, "console,acme-fax", "plugins", "--json")
    config = write_config(tmp_path, channels={"FAX": {"plugin": "acme-fax", "kind": "sms"}})
    check = otpagent(site, "console,acme-fax", "config", "check", config=config)

    fax = listing(listed)["acme-fax"]
    assert (fax["status"], fax["phase"], fax["error"]) == ("failed", "registering channels",
                                                           "RuntimeError: fax modem not found")
    assert str(fax["where"]).endswith(f"acme_fax{os.sep}__init__.py:10")
    assert fax["registers"] == {}, "what it registered before raising is not used"
    assert check.returncode == 2
    assert ("config error at channels.FAX.plugin: the channel 'acme-fax' is not available: plugin 'acme-fax' "
            "(acme-fax 1.0.0) failed while registering channels: RuntimeError: fax modem not found") in check.stderr
    assert "Traceback" not in check.stderr


def test_a_name_registered_by_two_packages_is_an_error_naming_both(site, tmp_path):
    config = write_config(tmp_path)

    sent = otpagent(site, "console,acme-console", "send", "--to", "+447700900123", "hello", config=config)
    check = otpagent(site, "console,acme-console", "config", "check", config=config)
    rows = listing(otpagent(site, "console,acme-console", "plugins", "--json"))

    assert sent.returncode == 2 and "Traceback" not in sent.stderr
    assert "config error at channels.voice.plugin: the channel name 'console' is registered by both " in sent.stderr
    for run in (sent, check):
        assert "otpagent-console 0.1.0" in run.stderr and "acme-console 1.2.0" in run.stderr
        assert "uninstall one or restrict loading with OTPAGENT_LOAD_PLUGINS" in run.stderr
    assert check.returncode == 2
    assert rows["console"]["clashes"] and rows["acme-console"]["clashes"]


def test_a_built_in_name_registered_by_a_package_is_the_same_error(site, tmp_path):
    config = write_config(tmp_path, channels={"SMS": {"plugin": "console", "kind": "sms", "quiet": True}},
                          sinks=[{"plugin": "log"}])

    run = otpagent(site, "console,acme-console", "config", "check", config=config)

    assert run.returncode == 2
    assert "config error at channels.SMS.plugin" in run.stderr
    rows = listing(otpagent(site, "console,acme-console", "plugins", "--json"))
    [sink_clash] = [m for m in rows["otpagent.builtins"]["clashes"]]
    assert sink_clash == ("the event sink name 'log' is registered by both acme-console 1.2.0 and otpagent (built-in); "
                          "uninstall one or restrict loading with OTPAGENT_LOAD_PLUGINS")


@pytest.mark.parametrize(("plugin", "returned"), [("acme-sms", "None"), ("acme-sms-text", "a str")])
def test_config_check_fails_on_a_factory_that_returns_no_channel(site, tmp_path, plugin, returned):
    config = write_config(tmp_path, channels={"SMS": {"plugin": plugin, "kind": "sms"}})

    run = otpagent(site, "console,acme-sms", "config", "check", config=config)

    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"error: config error at channels.SMS.plugin: the factory of '{plugin}' (acme-sms 1.0.2) returned {returned}, "
        "not a Channel (missing: name, kind, supports, check, estimate_cost, send, close)"]
