"""Loading plugins so that no plugin can break the others, and knowing who each plugin is.

Every entry point of the group ``otpagent`` loads on its own. One that raises while importing
(an ``ImportError``, a ``SyntaxError``, anything) or whose hook implementations pluggy refuses
is recorded as a :class:`LoadFailure` (plugin, distribution and version, exception, the
``file:line`` where it was raised) and skipped; every other plugin loads as usual. The built-ins
load the same way, after the entry points, so they get no private path.

``OTPAGENT_LOAD_PLUGINS`` (comma-separated distribution or entry-point names, empty for none)
restricts which installed plugins load, which makes tests and debugging deterministic.

Hooks are called once per plugin through pluggy (:func:`plugin_hook_caller`), so the caller
knows which plugin registered what and a plugin that raises is isolated, while hook wrappers,
argument checks and tracing work as pluggy promises.
"""

from __future__ import annotations

import functools
import importlib
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from weakref import WeakKeyDictionary

import attrs
import importlib_metadata
import pluggy

from otpagent import hookspecs

if TYPE_CHECKING:
    import click

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "LoadFailure",
    "PluginOrigin",
    "add_plugin_commands",
    "exception_summary",
    "get_plugin_manager",
    "hook_implementers",
    "load_failures",
    "plugin_hook_caller",
    "plugin_origin",
    "raised_at",
]

ENTRY_POINT_GROUP = "otpagent"
DEFAULT_PLUGINS = ("otpagent.builtins", "otpagent.server.plugin")

#: Longest exception message kept in a failure (they end up on one log line).
_MAX_MESSAGE = 300


def _no_package() -> tuple[str, str]:
    return "", ""


@attrs.frozen
class PluginOrigin:
    """Where a plugin comes from: an installed distribution, otpagent itself, or the process.

    The distribution's name and version are read when first asked for, not when the plugin
    loads: reading them parses the package's ``METADATA`` with the ``email`` package, which
    would cost every import of otpagent ~15 ms for figures only the plugin listing, error
    messages and ``OTPAGENT_LOAD_PLUGINS`` use.
    """

    plugin: str
    source: Literal["entry point", "built-in", "in process"]
    #: The entry point's name and value (``acme = acme_sms.plugin``), for entry points.
    entry_point_name: str = ""
    entry_point_value: str = ""
    #: Returns ``(distribution, version)``, reading them on the first call only.
    package: Callable[[], tuple[str, str]] = attrs.field(default=_no_package, eq=False, repr=False)

    @property
    def distribution(self) -> str:
        return self.package()[0]

    @property
    def version(self) -> str:
        return self.package()[1]

    @property
    def label(self) -> str:
        """Who registered it, for people: ``acme-sms 1.0.2``, ``otpagent (built-in)`` or
        ``<name> (registered in process)``."""
        if self.source == "entry point":
            return f"{self.distribution} {self.version}".strip()
        if self.source == "built-in":
            return "otpagent (built-in)"
        return f"{self.plugin} (registered in process)"


@attrs.frozen
class LoadFailure:
    """A plugin that raised while importing, registering or adding commands; it is not used."""

    origin: PluginOrigin
    #: What it was doing: ``importing``, ``registering channels``, ``adding commands`` ...
    phase: str
    error_type: str
    message: str
    #: ``file:line`` where the exception was raised (the plugin's own frame when there is one).
    where: str
    #: ``(kind, name)`` pairs it registered before it raised (dropped with the rest of it).
    provides: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_exception(cls, origin: PluginOrigin, phase: str, exc: BaseException,
                       provides: frozenset[tuple[str, str]] = frozenset()) -> LoadFailure:
        where = raised_at(exc) or (
            f"entry point {origin.entry_point_name} = {origin.entry_point_value}" if origin.entry_point_name else "?")
        return cls(origin=origin, phase=phase, error_type=type(exc).__name__, message=_one_line(exc),
                   where=where, provides=provides)

    @property
    def plugin(self) -> str:
        return self.origin.plugin

    @property
    def error(self) -> str:
        """``ModuleNotFoundError: No module named 'acme_sdk'``."""
        return f"{self.error_type}: {self.message}" if self.message else self.error_type

    def describe(self) -> str:
        """One line for people: which plugin, from which package, doing what, and why."""
        return (f"plugin {self.plugin!r} ({self.origin.label}) failed while {self.phase}: {self.error} "
                f"(at {self.where})")


@attrs.define
class _LoadState:
    origins: dict[str, PluginOrigin] = attrs.Factory(dict)
    failures: list[LoadFailure] = attrs.Factory(list)


#: What the loader knows of each plugin manager it created (a plain PluginManager made by a
#: test has none of this: its plugins count as registered in process).
_STATES: WeakKeyDictionary[pluggy.PluginManager, _LoadState] = WeakKeyDictionary()
_pm: pluggy.PluginManager | None = None
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
    state = _STATES.setdefault(pm, _LoadState())
    allowed = _allowed_plugins()
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = functools.cache(functools.partial(_entry_point_package, ep))
        if allowed is not None and ep.name not in allowed and package()[0] not in allowed:
            continue
        # Two distributions may use the same entry-point name: load both, so that what they
        # register clashes loudly instead of one of them vanishing.
        name = ep.name if not pm.has_plugin(ep.name) else f"{package()[0]}:{ep.name}"
        origin = PluginOrigin(plugin=name, source="entry point", package=package,
                              entry_point_name=ep.name, entry_point_value=ep.value)
        _load_one(pm, state, origin, ep.load)
    for module_name in DEFAULT_PLUGINS:
        origin = PluginOrigin(plugin=module_name, source="built-in", package=_core_package)
        _load_one(pm, state, origin, functools.partial(importlib.import_module, module_name))
    return pm


def _load_one(pm: pluggy.PluginManager, state: _LoadState, origin: PluginOrigin, load: Callable[[], object]) -> None:
    state.origins[origin.plugin] = origin
    try:
        plugin = load()
    except (Exception, SystemExit) as exc:  # SystemExit: a module that calls sys.exit() on import
        state.failures.append(LoadFailure.from_exception(origin, "importing", exc))
        return
    try:  # pluggy checks each hook implementation's arguments against the hook here
        pm.register(plugin, name=origin.plugin)
        failure = _unknown_hooks(pm, plugin, origin)
    except Exception as exc:
        failure = LoadFailure.from_exception(origin, "loading its hooks", exc)
    if failure is not None:
        if pm.get_plugin(origin.plugin) is not None:
            pm.unregister(name=origin.plugin)
        state.failures.append(failure)


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object, origin: PluginOrigin) -> LoadFailure | None:
    """A misspelt hook (``otpagent_register_chanels``) would otherwise do nothing, silently."""
    unknown = [(caller.name, impl.function) for caller in pm.get_hookcallers(plugin) or [] if caller.spec is None
               for impl in caller.get_hookimpls() if impl.plugin is plugin and not impl.optionalhook]
    if not unknown:
        return None
    import difflib  # only for this message: keeps ~3 ms off every import of otpagent

    known = [n for n in dir(hookspecs) if n.startswith("otpagent_")]
    hints = []
    for name, _ in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    code = getattr(unknown[0][1], "__code__", None)  # any callable may be marked as a hook implementation
    where = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else "?"
    return LoadFailure(origin=origin, phase="loading its hooks", error_type="PluginValidationError",
                       message=f"implements {', '.join(hints)}, which is not an otpagent hook (see otpagent.hookspecs)",
                       where=where)


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("OTPAGENT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_point_package(ep: importlib_metadata.EntryPoint) -> tuple[str, str]:
    if ep.dist is None:
        return "(unknown distribution)", ""
    return ep.dist.name, ep.dist.version


@functools.cache
def _core_package() -> tuple[str, str]:
    try:
        return "otpagent", importlib_metadata.version("otpagent")
    except importlib_metadata.PackageNotFoundError:
        return "otpagent", "unknown"


def load_failures(pm: pluggy.PluginManager) -> list[LoadFailure]:
    """The plugins of ``pm`` that failed to import or to add their commands, in order."""
    state = _STATES.get(pm)
    return list(state.failures) if state is not None else []


def plugin_origin(pm: pluggy.PluginManager, name: str) -> PluginOrigin:
    """Where the plugin registered as ``name`` comes from."""
    state = _STATES.get(pm)
    if state is not None and name in state.origins:
        return state.origins[name]
    if name in DEFAULT_PLUGINS:
        return PluginOrigin(plugin=name, source="built-in", package=_core_package)
    return PluginOrigin(plugin=name, source="in process")


# --------------------------------------------------------------------------------------------
# Calling a hook one plugin at a time


def hook_implementers(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, object]]:
    """``(name, plugin)`` of every plugin implementing the hook (wrappers aside), in the order
    they were registered."""
    hook: pluggy.HookCaller = getattr(pm.hook, hook_name)
    providers = {impl.plugin for impl in hook.get_hookimpls() if not (impl.wrapper or impl.hookwrapper)}
    return [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None and plugin in providers]


def plugin_hook_caller(pm: pluggy.PluginManager, hook_name: str, plugin: object) -> pluggy.HookCaller:
    """A pluggy hook caller that runs only ``plugin``'s implementation of the hook, still
    inside every hook wrapper and visible to pluggy's tracing and call monitoring."""
    others = [p for _, p in hook_implementers(pm, hook_name) if p is not plugin]
    return pm.subset_hook_caller(hook_name, others)


def add_plugin_commands(cli: click.Group, pm: pluggy.PluginManager | None = None) -> None:
    """Let each plugin add its commands; one that raises is recorded as a failure, not fatal."""
    pm = pm or get_plugin_manager()
    state = _STATES.setdefault(pm, _LoadState())
    failed = {f.plugin for f in state.failures}
    for name, plugin in hook_implementers(pm, "otpagent_register_commands"):
        if name in failed:  # already reported (commands are added again when the CLI is re-entered)
            continue
        try:
            plugin_hook_caller(pm, "otpagent_register_commands", plugin)(cli=cli)
        except Exception as exc:
            state.failures.append(LoadFailure.from_exception(plugin_origin(pm, name), "adding commands", exc))


# --------------------------------------------------------------------------------------------
# Describing an exception in one line


def exception_summary(exc: BaseException) -> str:
    """``RuntimeError: fax modem not found`` (one line, bounded)."""
    message = _one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE - 3] + "..."


_MACHINERY_DIRS = tuple(str(Path(m.__file__ or "").parent) + os.sep for m in (importlib, importlib_metadata, pluggy))
_MACHINERY_FILES = frozenset(
    str(Path(__file__).with_name(name)) for name in ("plugin_loading.py", "plugins.py", "plugin_checks.py"))


def raised_at(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised, skipping the import and plugin machinery so the
    answer points into the plugin; empty when no frame is left."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if name.startswith("<frozen") or name.startswith(_MACHINERY_DIRS) or name in _MACHINERY_FILES:
            continue
        return f"{name}:{frame.lineno}"
    return ""
