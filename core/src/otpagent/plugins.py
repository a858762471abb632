"""What the loaded plugins registered: factories by extension point and name, and who gave them.

:func:`build_registry` calls each registration hook once per plugin through pluggy, so it
knows who registered what. A plugin whose hook raises is a failure: nothing it registered is
used. A name registered by two plugins (built-ins included) is a :class:`NameClash`: it is in
no table, looking it up raises :class:`~otpagent.errors.PluginConflict` naming both
distributions, ``otpagent plugins`` shows it and ``otpagent config check`` fails on it.
Loading itself (entry points, ``OTPAGENT_LOAD_PLUGINS``) is in :mod:`otpagent.plugin_loading`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from otpagent.errors import PluginConflict, PluginLoadFailed, PluginNotFound
from otpagent.logs import get_logger
from otpagent.plugin_loading import (
    LoadFailure,
    PluginOrigin,
    get_plugin_manager,
    hook_implementers,
    load_failures,
    plugin_hook_caller,
    plugin_origin,
)
from otpagent.registration import PluginKind

__all__ = [
    "KNOWN_PACKAGES",
    "HttpRoute",
    "NameClash",
    "Registered",
    "Registry",
    "build_registry",
    "describe_plugins",
    "get_plugin_manager",
]

log = get_logger("otpagent.plugins")

#: Which distribution provides a well-known name, for "pip install ..." hints.
KNOWN_PACKAGES = {
    "console": "otpagent-console",
    "twilio-sms": "otpagent-twilio",
    "twilio-whatsapp": "otpagent-twilio",
    "twilio-voice": "otpagent-twilio",
    "sendgrid-email": "otpagent-sendgrid",
    "postgres": "otpagent-postgres",
}

_KINDS: tuple[PluginKind, ...] = ("channels", "routing_strategies", "storage_backends", "event_sinks")
_NOUNS = {"channels": "channel", "routing_strategies": "routing strategy", "storage_backends": "storage backend",
          "event_sinks": "event sink", "http_routes": "HTTP route"}


@attrs.frozen(kw_only=True)
class _FromPlugin:
    """Something a plugin registered, and the plugin that registered it."""

    origin: PluginOrigin

    @property
    def plugin(self) -> str:
        return self.origin.plugin

    @property
    def label(self) -> str:
        """Who registered it, for errors and logs: ``acme-sms 1.0.2``, ``otpagent (built-in)``,
        ``<plugin> (registered in process)`` (reads the package's metadata on first use)."""
        return self.origin.label


@attrs.frozen(kw_only=True)
class Registered(_FromPlugin):
    """A factory, the name it is registered under, and the plugin that registered it."""

    name: str
    factory: Callable[..., object]


@attrs.frozen(kw_only=True)
class HttpRoute(_FromPlugin):
    """An endpoint a plugin mounts on the service."""

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...]


@attrs.frozen(kw_only=True)
class NameClash:
    """One name (or method and path) registered by more than one plugin."""

    kind: str
    name: str
    plugins: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def message(self) -> str:
        noun = _NOUNS[self.kind]
        if len(set(self.labels)) == 1:
            return f"the {noun} name {self.name!r} is registered twice by {self.labels[0]}; fix or uninstall it"
        who = " and ".join(self.labels) if len(self.labels) == 2 else (
            ", ".join(self.labels[:-1]) + f" and {self.labels[-1]}")
        return (f"the {noun} name {self.name!r} is registered by both {who}; uninstall one or restrict loading "
                f"with OTPAGENT_LOAD_PLUGINS")


@attrs.define
class Registry:
    """Everything the loaded plugins registered, by extension point and name.

    Only names registered exactly once are in the tables; the others are in ``clashes``.
    ``failures`` lists the plugins that failed to import or register (they registered nothing).
    """

    channels: dict[str, Registered] = attrs.Factory(dict)
    routing_strategies: dict[str, Registered] = attrs.Factory(dict)
    storage_backends: dict[str, Registered] = attrs.Factory(dict)
    event_sinks: dict[str, Registered] = attrs.Factory(dict)
    http_routes: list[HttpRoute] = attrs.Factory(list)
    clashes: list[NameClash] = attrs.Factory(list)
    failures: list[LoadFailure] = attrs.Factory(list)

    def table(self, kind: PluginKind) -> dict[str, Registered]:
        """The factories of one extension point, by name."""
        table: dict[str, Registered] = getattr(self, kind)
        return table

    def lookup(self, kind: PluginKind, name: str, config_path: str) -> Registered:
        """The factory registered as ``name``; otherwise an error at ``config_path`` that says
        why: two plugins register it, the plugin that provides it failed, or what to install.
        """
        for clash in self.clashes:
            if clash.kind == kind and clash.name == name:
                raise PluginConflict(config_path, clash.message)
        table = self.table(kind)
        if name in table:
            return table[name]
        noun = _NOUNS[kind]
        culprit = next((f for f in self.failures if _provides(f, kind, name)), None)
        if culprit is not None:
            raise PluginLoadFailed(config_path, f"the {noun} {name!r} is not available: {culprit.describe()}")
        hint = KNOWN_PACKAGES.get(name)
        install = f"install it with `pip install {hint}`" if hint else "install the package that provides it"
        known = ", ".join(sorted(table)) or "none"
        reason = f"no installed plugin provides the {noun} {name!r}; {install} (installed: {known})"
        if self.failures:
            reason += "; these plugins failed to load and may provide it: " + "; ".join(
                f.describe() for f in self.failures)
            raise PluginLoadFailed(config_path, reason)
        raise PluginNotFound(config_path, reason)

    def label(self, kind: PluginKind, name: str) -> str:
        """Who registered ``name`` (``acme-sms 1.0.2``, ``otpagent (built-in)``...), for errors
        and logs; ``unknown plugin`` when nothing is registered under it."""
        registered = self.table(kind).get(name)
        return registered.label if registered is not None else "unknown plugin"


def _provides(failure: LoadFailure, kind: str, name: str) -> bool:
    """Whether the failed plugin is known to provide ``name``: it registered it before raising,
    its entry point has that name, or it is the package known to provide it."""
    origin = failure.origin
    return ((kind, name) in failure.provides or origin.entry_point_name == name
            or (origin.source == "entry point" and KNOWN_PACKAGES.get(name) == origin.distribution))


@attrs.define
class _Contribution:
    """What one plugin registered, kept apart until all of its hooks have run without raising."""

    origin: PluginOrigin
    entries: list[tuple[str, str, Callable[..., object]]] = attrs.Factory(list)
    routes: list[tuple[str, Callable[..., Any], tuple[str, ...]]] = attrs.Factory(list)
    #: Names it tried to register with a bad factory: it is the plugin that provides them.
    attempted: set[tuple[str, str]] = attrs.Factory(set)

    def names(self) -> frozenset[tuple[str, str]]:
        return frozenset((kind, name) for kind, name, _ in self.entries) | self.attempted

    def register_for(self, kind: str) -> Callable[[str, Callable[..., object]], None]:
        def register(name: str, factory: Callable[..., object]) -> None:
            if not isinstance(name, str) or not name.strip():
                raise TypeError(f"register() needs a non-empty name, got {name!r}")
            if not callable(factory):
                self.attempted.add((kind, name))
                raise TypeError(f"register({name!r}, factory) needs a callable factory, "
                                f"got {type(factory).__name__}")
            self.entries.append((kind, name, factory))

        return register

    def register_route(self, path: str, endpoint: Callable[..., Any], methods: Iterable[str] = ("POST",)) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise TypeError(f"register() needs a path starting with '/', got {path!r}")
        if not callable(endpoint):
            raise TypeError(f"register({path!r}, endpoint) needs a callable endpoint, got {type(endpoint).__name__}")
        if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
            raise TypeError(f"register({path!r}, endpoint, methods) needs a sequence of method names such as "
                            f"('POST',), got {methods!r}")
        self.routes.append((path, endpoint, tuple(m.upper() for m in methods)))


def build_registry(pm: pluggy.PluginManager | None = None, *, warn: bool = True) -> Registry:
    """Call every registration hook once per plugin and collect what was registered.

    With ``warn`` (the default), each failed plugin and each name clash is logged once per
    process as a warning (``plugin_failed``, ``plugin_name_clash``), so an application that
    never runs ``otpagent plugins`` still hears of it.
    """
    pm = pm or get_plugin_manager()
    failures = load_failures(pm)
    failed = {f.plugin for f in failures}
    contributions: dict[str, _Contribution] = {}
    hooks = [(f"otpagent_register_{kind}", kind) for kind in (*_KINDS, "http_routes")]
    for hook_name, kind in hooks:
        for name, plugin in hook_implementers(pm, hook_name):
            if name in failed:
                continue
            contribution = contributions.setdefault(name, _Contribution(plugin_origin(pm, name)))
            register = contribution.register_route if kind == "http_routes" else contribution.register_for(kind)
            try:
                plugin_hook_caller(pm, hook_name, plugin)(register=register)
            except Exception as exc:
                failed.add(name)
                failures.append(LoadFailure.from_exception(contribution.origin, f"registering {_NOUNS[kind]}s", exc,
                                                           provides=contribution.names()))
    registry = Registry(failures=failures)
    in_order = [contributions[n] for n, _ in pm.list_name_plugin() if n in contributions and n not in failed]
    _merge(registry, in_order)
    if warn:
        _warn_once(registry)
    return registry


def _merge(registry: Registry, contributions: list[_Contribution]) -> None:
    """Fill the tables with names registered once; record every other name as a clash."""
    claims: dict[tuple[str, str], list[Registered]] = {}
    for c in contributions:
        for kind, name, factory in c.entries:
            entry = Registered(name=name, factory=factory, origin=c.origin)
            same = claims.setdefault((kind, name), [])
            if entry not in same:  # the same factory registered twice by one plugin is harmless
                same.append(entry)
    for (kind, name), entries in claims.items():
        if len(entries) == 1:
            getattr(registry, kind)[name] = entries[0]
        else:
            registry.clashes.append(NameClash(kind=kind, name=name, plugins=tuple(e.plugin for e in entries),
                                              labels=tuple(e.label for e in entries)))
    routes = [HttpRoute(path=path, endpoint=endpoint, methods=methods, origin=c.origin)
              for c in contributions for path, endpoint, methods in c.routes]
    owners: dict[str, list[HttpRoute]] = {}
    for route in routes:
        for method in route.methods:
            owners.setdefault(f"{method} {route.path}", []).append(route)
    clashing = {key: rs for key, rs in owners.items() if len(rs) > 1}
    for key, rs in clashing.items():
        registry.clashes.append(NameClash(kind="http_routes", name=key, plugins=tuple(r.plugin for r in rs),
                                          labels=tuple(r.label for r in rs)))
    dropped = {id(r) for rs in clashing.values() for r in rs}
    registry.http_routes.extend(r for r in routes if id(r) not in dropped)


#: Problems already logged by this process, so each is one warning line however often the
#: registry is built.
_WARNED: set[str] = set()


def _warn_once(registry: Registry) -> None:
    for failure in registry.failures:
        key = failure.describe()
        if key not in _WARNED:
            _WARNED.add(key)
            log.warning("plugin_failed", plugin=failure.plugin, package=failure.origin.label, phase=failure.phase,
                        error=failure.error, where=failure.where)
    for clash in registry.clashes:
        if clash.message not in _WARNED:
            _WARNED.add(clash.message)
            log.warning("plugin_name_clash", reason=clash.message)


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """For ``otpagent plugins``: each plugin, its distribution and version, what it registers,
    and (``status`` ``failed``) why it failed, or (``clashes``) which of its names clash."""
    pm = pm or get_plugin_manager()
    registry = build_registry(pm, warn=False)
    failures = {f.plugin: f for f in registry.failures}
    rows = [_failed_row(f) for f in failures.values()]
    for name, plugin in pm.list_name_plugin():
        if plugin is None or name in failures:
            continue
        row = _row(plugin_origin(pm, name), _registers(pm, registry, name, plugin))
        clashes = [c.message for c in registry.clashes if name in c.plugins]
        if clashes:
            row["clashes"] = clashes
        rows.append(row)
    return sorted(rows, key=lambda r: str(r["name"]))


def _registers(pm: pluggy.PluginManager, registry: Registry, name: str, plugin: object) -> dict[str, list[str]]:
    registers: dict[str, list[str]] = {}
    for kind in _KINDS:
        names = {n for n, r in registry.table(kind).items() if r.plugin == name}
        names |= {c.name for c in registry.clashes if c.kind == kind and name in c.plugins}
        if names:
            registers[kind] = sorted(names)
    routes = [f"{','.join(r.methods)} {r.path}" for r in registry.http_routes if r.plugin == name]
    routes += [c.name for c in registry.clashes if c.kind == "http_routes" and name in c.plugins]
    if routes:
        registers["http_routes"] = routes
    if "otpagent_register_commands" in {h.name for h in pm.get_hookcallers(plugin) or []}:
        registers["commands"] = ["yes"]
    return registers


def _row(origin: PluginOrigin, registers: dict[str, list[str]]) -> dict[str, Any]:
    if origin.source == "built-in":
        package, version = "otpagent (built-in)", origin.version
    elif origin.source == "entry point":
        package, version = origin.distribution, origin.version
    else:
        package, version = "(registered in process)", ""
    return {"name": origin.plugin, "package": package, "version": version, "status": "loaded",
            "registers": registers}


def _failed_row(failure: LoadFailure) -> dict[str, Any]:
    row = _row(failure.origin, {})
    row.update(status="failed", phase=failure.phase, error=failure.error, where=failure.where)
    return row

