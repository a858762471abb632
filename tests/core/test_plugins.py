"""The plugin system: built-ins through the same hooks, and a third-party package found by its
entry point and used from config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pluggy
import pytest

import otpagent_console.plugin
from otpagent import ConfigError, IntelligentOTPAgent, MessageRequest, builtins, hookspecs
from otpagent.errors import PluginConflict, PluginLoadFailed
from otpagent.hookspecs import hookimpl
from otpagent.plugin_loading import add_plugin_commands
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
        "commands": ["yes"],  # otpagent otp reset-key
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
                  "otp": {"key_file": str(tmp_path / "otpagent.key")},
                  "channels": {k: {"plugin": "console", "kind": k, "quiet": True} for k in ("sms", "email")}}
        with IntelligentOTPAgent(config, registry=build_registry(pm)) as agent:
            agent.start_processing()
            mid = agent.send_message(MessageRequest(phone_number="+447700900123", email="a@example.com",
                                                    content="hi", priority="CRITICAL"))
            assert agent.wait_until_idle(10)
            assert agent.get_delivery_report(mid).channel == "email"
    finally:
        pm.unregister(plugin)


def test_label_says_who_registered_each_configured_plugin(tmp_path):
    pm = get_plugin_manager()
    plugin = _StrategyPlugin()
    pm.register(plugin, name="email-first-test")
    try:
        config = {"storage": {"path": str(tmp_path / "a.db")}, "routing": {"strategy": "email-first"}, "sinks": [],
                  "otp": {"key_file": str(tmp_path / "otpagent.key")},
                  "channels": {"SMS": {"plugin": "console", "kind": "sms", "quiet": True}}}
        with IntelligentOTPAgent(config, registry=build_registry(pm)) as agent:
            assert agent.plugin_label("channels", agent.channel_configs["SMS"].plugin) == "otpagent-console 0.1.0"
            assert agent.plugin_label("routing_strategies", "email-first") == "email-first-test (registered in process)"
            assert agent.plugin_label("storage_backends", "sqlite") == "otpagent (built-in)"
    finally:
        pm.unregister(plugin)


# -- registration goes through pluggy, one plugin at a time -----------------------------------


class _Watcher:
    """A new-style hook wrapper: runs around every call of the channel registration hook."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def otpagent_register_channels(self, register):
        self.calls += 1
        return (yield)


def _only_builtins_console_and(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("otpagent")
    pm.add_hookspecs(hookspecs)
    pm.register(builtins)
    pm.register(otpagent_console.plugin, name="console")
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_each_plugin_registers_through_a_pluggy_hook_call_inside_the_wrappers():
    watcher = _Watcher()
    pigeons = _ChannelPlugin("pigeon")
    pm = _only_builtins_console_and(watcher, pigeons)
    seen: list[tuple[str, list[str]]] = []
    undo = pm.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: seen.append((hook_name, [pm.get_name(i.plugin) for i in impls])),
        lambda outcome, hook_name, impls, kwargs: None)
    try:
        registry = build_registry(pm, warn=False)
    finally:
        undo()

    channel_calls = [names for hook, names in seen if hook == "otpagent_register_channels"]
    watcher_name = pm.get_name(watcher)
    assert sorted(channel_calls) == sorted([["console", watcher_name], [pm.get_name(pigeons), watcher_name]]), \
        "one call per plugin, each with only that plugin's implementation plus the wrapper"
    assert watcher.calls == 2
    assert registry.channels["pigeon"].label == f"{pm.get_name(pigeons)} (registered in process)"
    assert registry.channels["console"].plugin == "console"


class _ChannelPlugin:
    def __init__(self, name: str, factory=None) -> None:
        self.name = name
        self.factory = factory or (lambda spec: None)

    @hookimpl
    def otpagent_register_channels(self, register):
        register(self.name, self.factory)


class _BadRegisterCall:
    @hookimpl
    def otpagent_register_channels(self, register):
        register("owl", "not a factory")


def test_a_bad_register_call_fails_that_plugin_only_and_points_at_the_call():
    bad = _BadRegisterCall()
    pm = _only_builtins_console_and(bad)

    registry = build_registry(pm, warn=False)

    [failure] = registry.failures
    assert failure.plugin == pm.get_name(bad) and failure.phase == "registering channels"
    assert failure.error == "TypeError: register('owl', factory) needs a callable factory, got str"
    line = _BadRegisterCall.otpagent_register_channels.__code__.co_firstlineno + 2
    assert failure.where == f"{__file__}:{line}"
    assert "console" in registry.channels and "owl" not in registry.channels
    with pytest.raises(PluginLoadFailed, match=r"the channel 'owl' is not available: plugin .* failed while "
                                               r"registering channels: TypeError"):
        registry.lookup("channels", "owl", "channels.OWL.plugin")


class _PriorityShadow:
    @hookimpl
    def otpagent_register_routing_strategies(self, register):
        register("priority", lambda settings, context: LoudStrategy())


def test_a_plugin_and_a_built_in_registering_one_name_is_a_conflict_naming_both():
    pm = _only_builtins_console_and()
    pm.register(_PriorityShadow(), name="priority-shadow")

    registry = build_registry(pm, warn=False)

    assert "priority" not in registry.routing_strategies, "no silent winner"
    with pytest.raises(PluginConflict) as exc:
        registry.lookup("routing_strategies", "priority", "routing.strategy")
    assert exc.value.path == "routing.strategy"
    assert exc.value.reason == ("the routing strategy name 'priority' is registered by both otpagent (built-in) and "
                                "priority-shadow (registered in process); uninstall one or restrict loading with "
                                "OTPAGENT_LOAD_PLUGINS")


# -- factories' results are checked where the agent builds them --------------------------------


class _Factories:
    """Registers a factory of each kind that returns whatever the test asks for."""

    def __init__(self, made: dict[str, object]) -> None:
        self.made = made

    @hookimpl
    def otpagent_register_channels(self, register):
        register("odd-channel", lambda spec: self.made["channel"])

    @hookimpl
    def otpagent_register_routing_strategies(self, register):
        register("odd-strategy", lambda settings, context: self.made["strategy"])

    @hookimpl
    def otpagent_register_storage_backends(self, register):
        register("odd-storage", lambda settings, context: self.made["storage"])

    @hookimpl
    def otpagent_register_event_sinks(self, register):
        register("odd-sink", lambda settings, context: self.made["sink"])


class _FaxChannel:
    name = "fax"
    kind = "fax"

    def supports(self, envelope): return True
    def check(self, envelope): return None
    def estimate_cost(self, envelope): return 0.0
    def send(self, envelope): raise AssertionError("never sent")
    close = "not callable"


class _HalfStrategy:
    def plan(self, envelope, candidates): return [c.name for c in candidates]


class _ChattySink:
    event_types = "attempt"  # one name where a collection of names belongs

    def emit(self, event): pass
    def close(self): pass


def _build(tmp_path, made, **config):
    pm = _only_builtins_console_and(_Factories(made))
    pm_name = pm.get_name(next(p for p in pm.get_plugins() if isinstance(p, _Factories)))
    base = {"storage": {"path": str(tmp_path / "a.db")}, "sinks": [],
            "otp": {"key_file": str(tmp_path / "otpagent.key")},
            "channels": {"SMS": {"plugin": "console", "kind": "sms", "quiet": True}}}
    return pm_name, lambda: IntelligentOTPAgent({**base, **config}, registry=build_registry(pm, warn=False))


@pytest.mark.parametrize(("made", "config", "path", "reason"), [
    ({"channel": _FaxChannel()}, {"channels": {"FAX": {"plugin": "odd-channel"}}}, "channels.FAX.plugin",
     "the factory of 'odd-channel' ({plugin}) returned a _FaxChannel, not a Channel (close is a str, not a method; "
     "kind is 'fax', not one of sms, whatsapp, voice, email)"),
    ({"strategy": _HalfStrategy()}, {"routing": {"strategy": "odd-strategy"}}, "routing.strategy",
     "the factory of 'odd-strategy' ({plugin}) returned a _HalfStrategy, not a RoutingStrategy (missing: observe)"),
    ({"storage": 42}, {"storage": {"backend": "odd-storage"}}, "storage.backend",
     "the factory of 'odd-storage' ({plugin}) returned an int, not a StorageBackend "
     "(missing: name, capabilities, enqueue, "),
    ({"sink": None}, {"sinks": [{"plugin": "log"}, {"plugin": "odd-sink"}]}, "sinks[1].plugin",
     "the factory of 'odd-sink' ({plugin}) returned None, not an EventSink (missing: emit, close)"),
    ({"sink": _ChattySink()}, {"sinks": [{"plugin": "odd-sink"}]}, "sinks[0].plugin",
     "the factory of 'odd-sink' ({plugin}) returned a _ChattySink, not an EventSink (event_types is a str, "
     "not a collection of event type names or None)"),
])
def test_a_factory_result_that_breaks_its_protocol_is_a_config_error_at_its_key(tmp_path, made, config, path, reason):
    plugin, build = _build(tmp_path, made, **config)

    with pytest.raises(ConfigError) as exc:
        build()

    assert exc.value.path == path
    assert exc.value.reason.startswith(reason.format(plugin=f"{plugin} (registered in process)"))


def test_a_factory_that_raises_is_a_config_error_naming_the_plugin_and_where(tmp_path):
    def explode(spec):
        return spec.settings["loft"]

    pm = _only_builtins_console_and(_ChannelPlugin("pigeon", explode))
    config = {"storage": {"path": str(tmp_path / "a.db")}, "sinks": [], "channels": {"BIRD": {"plugin": "pigeon"}}}

    with pytest.raises(ConfigError) as exc:
        IntelligentOTPAgent(config, registry=build_registry(pm, warn=False))

    assert exc.value.path == "channels.BIRD.plugin"
    assert exc.value.reason.startswith("the factory of 'pigeon' (")
    assert f"raised KeyError: 'loft' (at {__file__}:{explode.__code__.co_firstlineno + 1})" in exc.value.reason


class _BrokenCommands:
    @hookimpl
    def otpagent_register_channels(self, register):
        register("loud", lambda spec: None)

    @hookimpl
    def otpagent_register_commands(self, cli):
        raise RuntimeError("no terminal")


def test_a_plugin_that_fails_to_add_commands_is_reported_and_not_used():
    broken = _BrokenCommands()
    pm = _only_builtins_console_and(broken)
    group = click.Group("otpagent")

    add_plugin_commands(group, pm)
    add_plugin_commands(group, pm)  # the CLI may be entered again: still one failure
    registry = build_registry(pm, warn=False)

    [failure] = registry.failures
    assert (failure.plugin, failure.phase, failure.error) == (pm.get_name(broken), "adding commands",
                                                              "RuntimeError: no terminal")
    assert "loud" not in registry.channels and "console" in registry.channels
    [row] = [r for r in describe_plugins(pm) if r["name"] == pm.get_name(broken)]
    assert row["status"] == "failed"
