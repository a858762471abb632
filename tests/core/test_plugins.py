"""The plugin system: built-ins through the same hooks, and a third-party package found by its
entry point and used from config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy

from otpagent import IntelligentOTPAgent, MessageRequest
from otpagent.hookspecs import hookimpl
from otpagent.plugins import build_registry, describe_plugins, get_plugin_manager

PIGEON_PLUGIN = textwrap.dedent('''
    """A third-party channel: carrier pigeons (appends to a file)."""
    import json
    from otpagent.hookspecs import hookimpl
    from otpagent.model import SendResult

    class Pigeon:
        kind = "sms"
        def __init__(self, spec):
            self.name = spec.name
            self.loft = spec.settings["loft"]
        def supports(self, envelope): return envelope.phone_number is not None
        def check(self, envelope): return None
        def estimate_cost(self, envelope): return 0.5
        def send(self, envelope):
            with open(self.loft, "a") as f:
                f.write(json.dumps({"id": envelope.message_id, "body": envelope.body}) + "\\n")
            return SendResult.accepted("PIGEON-" + envelope.message_id[-6:], cost=0.5)
        def close(self): pass

    @hookimpl
    def otpagent_register_channels(register):
        register("pigeon", Pigeon)
''')


def _install_fake_distribution(site: Path) -> None:
    """Lay out a package and its .dist-info exactly as pip installs one."""
    (site / "otpagent_pigeon").mkdir(parents=True)
    (site / "otpagent_pigeon" / "__init__.py").write_text(PIGEON_PLUGIN)
    info = site / "otpagent_pigeon-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: otpagent-pigeon\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[otpagent]\npigeon = otpagent_pigeon\n")
    (info / "RECORD").write_text("")


def test_third_party_plugin_is_discovered_by_entry_point_and_used_from_config(tmp_path):
    site = tmp_path / "site"
    _install_fake_distribution(site)
    loft = tmp_path / "loft.jsonl"
    config = {"storage": {"path": str(tmp_path / "a.db")}, "sinks": [],
              "channels": {"BIRD": {"plugin": "pigeon", "loft": str(loft)}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = textwrap.dedent(f"""
        from otpagent import IntelligentOTPAgent, MessageRequest
        with IntelligentOTPAgent({str(tmp_path / "config.json")!r}) as agent:
            agent.start_processing()
            mid = agent.send_message(MessageRequest(phone_number="+447700900123", content="coo"))
            assert agent.wait_until_idle(10)
            print(agent.get_delivery_report(mid).channel)
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("BIRD")
    assert json.loads(loft.read_text().splitlines()[0])["body"] == "coo"

    listing = subprocess.run([sys.executable, "-m", "otpagent.cli", "plugins", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["pigeon"]["package"] == "otpagent-pigeon" and rows["pigeon"]["version"] == "1.2.3"
    assert rows["pigeon"]["registers"] == {"channels": ["pigeon"]}


def test_load_plugins_env_restricts_what_loads(tmp_path):
    env = {**os.environ, "OTPAGENT_LOAD_PLUGINS": ""}
    run = subprocess.run([sys.executable, "-m", "otpagent.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    names = {r["name"] for r in json.loads(run.stdout)}
    assert names == {"otpagent.builtins", "otpagent.server.plugin"}, "only the built-ins load"


def test_builtins_register_through_the_same_hooks():
    rows = {r["name"]: r for r in describe_plugins()}
    assert rows["otpagent.builtins"]["registers"] == {
        "routing_strategies": ["adaptive", "cheapest", "most-reliable", "priority"],
        "storage_backends": ["memory", "sqlite"], "event_sinks": ["log"],
    }
    assert rows["console"]["registers"] == {"channels": ["console"]}


class LoudStrategy:
    """Registered in process, as tests of plugins usually do: always email first."""

    def plan(self, envelope, candidates):
        return sorted((c.name for c in candidates), key=lambda n: n != "email")

    def observe(self, outcome):
        pass


class _StrategyPlugin:
    @hookimpl
    def otpagent_register_routing_strategies(self, register):
        register("email-first", lambda settings, context: LoudStrategy())


def test_plugin_registered_in_process_is_used_from_config(tmp_path):
    pm: pluggy.PluginManager = get_plugin_manager()
    plugin = _StrategyPlugin()
    pm.register(plugin, name="email-first-test")
    try:
        config = {"storage": {"path": str(tmp_path / "a.db")}, "routing": {"strategy": "email-first"}, "sinks": [],
                  "channels": {k: {"plugin": "console", "kind": k, "quiet": True} for k in ("sms", "email")}}
        with IntelligentOTPAgent(config, registry=build_registry(pm)) as agent:
            agent.start_processing()
            mid = agent.send_message(MessageRequest(phone_number="+447700900123", email="a@example.com",
                                                    content="hi", priority="CRITICAL"))
            assert agent.wait_until_idle(10)
            assert agent.get_delivery_report(mid).channel == "email"
    finally:
        pm.unregister(plugin)
