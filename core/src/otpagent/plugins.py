"""The plugin manager: built-ins plus every package in the entry-point group ``otpagent``.

``OTPAGENT_LOAD_PLUGINS`` (comma-separated distribution or entry-point names, empty for none)
restricts which installed plugins load, which makes tests and debugging deterministic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import importlib_metadata
import pluggy

from otpagent import hookspecs
from otpagent.errors import PluginNotFound

__all__ = [
    "KNOWN_PACKAGES",
    "Registry",
    "build_registry",
    "describe_plugins",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "otpagent"
DEFAULT_PLUGINS = ("otpagent.builtins", "otpagent.server.plugin")

#: Which distribution provides a well-known name, for "pip install ..." hints.
KNOWN_PACKAGES = {
    "console": "otpagent-console",
    "twilio-sms": "otpagent-twilio",
    "twilio-whatsapp": "otpagent-twilio",
    "twilio-voice": "otpagent-twilio",
    "sendgrid-email": "otpagent-sendgrid",
    "postgres": "otpagent-postgres",
}

_pm: pluggy.PluginManager | None = None
#: plugin name -> (distribution, version), for plugins loaded from entry points.
_DISTRIBUTIONS: dict[str, tuple[str, str]] = {}


_pm_selection: str | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use (and anew when
    ``OTPAGENT_LOAD_PLUGINS`` changes, so the selection in force is the one used).
    """
    global _pm, _pm_selection
    selection = os.environ.get("OTPAGENT_LOAD_PLUGINS")
    if _pm is None or selection != _pm_selection:
        _pm = _create_plugin_manager()
        _pm_selection = selection
    return _pm


def _create_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("otpagent")
    pm.add_hookspecs(hookspecs)
    allowed = _allowed_plugins()
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        pm.register(ep.load(), name=ep.name)
        if ep.dist is not None:
            _DISTRIBUTIONS[ep.name] = (ep.dist.name, ep.dist.version)
    for module_name in DEFAULT_PLUGINS:
        __import__(module_name)
        pm.register(sys.modules[module_name], name=module_name)
    return pm


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("OTPAGENT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


@attrs.frozen
class Registered:
    """A factory and the plugin that registered it."""

    factory: Callable[..., Any]
    plugin: str


@attrs.frozen
class HttpRoute:
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...]
    plugin: str


_KINDS = ("channels", "routing_strategies", "storage_backends", "event_sinks")
_LABELS = {"channels": "channel", "routing_strategies": "routing strategy", "storage_backends": "storage backend",
           "event_sinks": "event sink"}


@attrs.define
class Registry:
    """Everything the loaded plugins registered, by extension point and name."""

    channels: dict[str, Registered] = attrs.Factory(dict)
    routing_strategies: dict[str, Registered] = attrs.Factory(dict)
    storage_backends: dict[str, Registered] = attrs.Factory(dict)
    event_sinks: dict[str, Registered] = attrs.Factory(dict)
    http_routes: list[HttpRoute] = attrs.Factory(list)

    def lookup(self, kind: str, name: str, config_path: str) -> Registered:
        """The factory registered as ``name``, or a PluginNotFound that says what to install."""
        table: dict[str, Registered] = getattr(self, kind)
        if name in table:
            return table[name]
        label = _LABELS[kind]
        hint = KNOWN_PACKAGES.get(name)
        install = f"install it with `pip install {hint}`" if hint else "install the package that provides it"
        known = ", ".join(sorted(table)) or "none"
        raise PluginNotFound(
            config_path, f"no installed plugin provides the {label} {name!r}; {install} (installed: {known})"
        )


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every registration hook once and collect what was registered."""
    pm = pm or get_plugin_manager()
    registry = Registry()
    for kind in _KINDS:
        table: dict[str, Registered] = getattr(registry, kind)
        hook = getattr(pm.hook, f"otpagent_register_{kind}")
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

            def register(name: str, factory: Callable[..., Any], _p: str = plugin_name,
                         _t: dict[str, Registered] = table) -> None:
                _t[name] = Registered(factory, _p)

            impl.function(register=register)
    for impl in pm.hook.otpagent_register_http_routes.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        def register_route(path: str, endpoint: Callable[..., Any], methods: Iterable[str] = ("POST",),
                           _p: str = plugin_name) -> None:
            registry.http_routes.append(HttpRoute(path, endpoint, tuple(methods), _p))

        impl.function(register=register_route)
    return registry


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """For ``otpagent plugins``: each plugin, its distribution and version, what it registers."""
    pm = pm or get_plugin_manager()
    registry = build_registry(pm)
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: np[0]):
        if plugin is None:
            continue
        registers: dict[str, list[str]] = {}
        for kind in _KINDS:
            names = sorted(n for n, r in getattr(registry, kind).items() if r.plugin == name)
            if names:
                registers[kind] = names
        routes = [f"{','.join(r.methods)} {r.path}" for r in registry.http_routes if r.plugin == name]
        if routes:
            registers["http_routes"] = routes
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        if "otpagent_register_commands" in hooks:
            registers["commands"] = ["yes"]
        if name in DEFAULT_PLUGINS:
            dist_name, version = "otpagent (built-in)", _core_version()
        else:
            dist_name, version = _DISTRIBUTIONS.get(name, ("(registered in process)", ""))
        rows.append({"name": name, "package": dist_name, "version": version, "registers": registers})
    return rows


def _core_version() -> str:
    try:
        return importlib_metadata.version("otpagent")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"
