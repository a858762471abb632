"""Calling a plugin's factory and checking what it returned against the protocol, at build time.

A plugin need not be type-checked, so a factory may return ``None``, a string, or an object that
lacks a method; found at the first send, that is a stuck message, found here it is a
:class:`~otpagent.errors.ConfigError` at the config key of that part (``channels.SMS.plugin``,
``routing.strategy``, ``storage.backend``, ``sinks[0].plugin``) naming the plugin's distribution
and what is wrong, which ``otpagent config check`` reports.

The members checked are read from the protocol classes in :mod:`otpagent.protocols`: every
method must be there and callable, every annotated attribute without a class-level default must
be there (and be a ``str`` where the protocol says ``str``); a channel's ``kind`` must also be
one of the known kinds. A factory that raises anything but ``ConfigError`` becomes a
``ConfigError`` naming the plugin, the exception and where it was raised.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping
from typing import Any, Protocol, cast

from otpagent.errors import ConfigError
from otpagent.model import ChannelKind
from otpagent.plugin_loading import exception_summary, raised_at
from otpagent.plugins import Registered
from otpagent.protocols import Channel, ChannelSpec, EventSink, PluginContext, RoutingStrategy, StorageBackend
from otpagent.protocols.sinks import sink_event_types

__all__ = [
    "call_channel_factory",
    "call_sink_factory",
    "call_storage_factory",
    "call_strategy_factory",
    "protocol_problems",
]

_KNOWN_KINDS = tuple(k.value for k in ChannelKind)


def call_channel_factory(registered: Registered, config_path: str, spec: ChannelSpec) -> Channel:
    """Build a channel with ``registered``'s factory; a result that is not a Channel is a
    ConfigError at ``config_path``."""
    made = _call(registered, config_path, spec)
    problems = protocol_problems(made, Channel)
    kind = getattr(made, "kind", None)
    if isinstance(kind, str) and kind not in _KNOWN_KINDS:
        problems.append(f"kind is {kind!r}, not one of {', '.join(_KNOWN_KINDS)}")
    _refuse_problems(registered, config_path, made, "Channel", problems)
    return cast(Channel, made)


def call_strategy_factory(registered: Registered, config_path: str, settings: Mapping[str, Any],
                          context: PluginContext) -> RoutingStrategy:
    """Build the routing strategy; a result that is not a RoutingStrategy is a ConfigError."""
    made = _call(registered, config_path, settings, context)
    _refuse_problems(registered, config_path, made, "RoutingStrategy", protocol_problems(made, RoutingStrategy))
    return cast(RoutingStrategy, made)


def call_storage_factory(registered: Registered, config_path: str, settings: Mapping[str, Any],
                         context: PluginContext) -> StorageBackend:
    """Build the storage backend; a result that is not a StorageBackend is a ConfigError."""
    made = _call(registered, config_path, settings, context)
    problems = protocol_problems(made, StorageBackend)
    if problems:
        _close_quietly(made)
    _refuse_problems(registered, config_path, made, "StorageBackend", problems)
    return cast(StorageBackend, made)


def call_sink_factory(registered: Registered, config_path: str, settings: Mapping[str, Any],
                      context: PluginContext) -> EventSink:
    """Build an event sink; a result that is not an EventSink is a ConfigError."""
    made = _call(registered, config_path, settings, context)
    problems = protocol_problems(made, EventSink)
    if not problems:
        try:
            sink_event_types(cast(EventSink, made))
        except TypeError:
            problems.append(f"event_types is {_a(getattr(made, 'event_types', None))}, not a collection of "
                            "event type names or None")
    _refuse_problems(registered, config_path, made, "EventSink", problems)
    return cast(EventSink, made)


def protocol_problems(obj: object, protocol: type[Any]) -> list[str]:
    """What ``obj`` lacks or gets wrong of ``protocol``'s declared members: ``missing: a, b``
    first (in declaration order), then one entry per member of the wrong type."""
    missing: list[str] = []
    wrong: list[str] = []
    attributes, methods = _members(protocol)
    for name, annotation in attributes.items():
        if not hasattr(obj, name):
            missing.append(name)
        elif annotation in ("str", str) and not isinstance(getattr(obj, name), str):
            wrong.append(f"{name} is {_a(getattr(obj, name))}, not a str")
    for name in methods:
        if not hasattr(obj, name):
            missing.append(name)
        elif not callable(getattr(obj, name)):
            wrong.append(f"{name} is {_a(getattr(obj, name))}, not a method")
    return ([f"missing: {', '.join(missing)}"] if missing else []) + wrong


def _members(protocol: type[Any]) -> tuple[dict[str, object], list[str]]:
    """The required attributes (name -> annotation) and the methods a protocol declares."""
    attributes: dict[str, object] = {}
    methods: list[str] = []
    for base in reversed(protocol.__mro__):
        if base in (object, Protocol) or base.__module__ == "typing":
            continue
        for name, annotation in inspect.get_annotations(base).items():
            if not name.startswith("_") and name not in base.__dict__:  # a class default makes it optional
                attributes[name] = annotation
        for name, value in base.__dict__.items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                attributes[name] = None  # must be there; its type is the getter's business
            elif callable(value) and name not in methods:
                methods.append(name)
    return attributes, methods


def _call(registered: Registered, config_path: str, *args: object) -> object:
    try:
        return registered.factory(*args)
    except ConfigError:
        raise  # the factory's own error names its key
    except Exception as exc:
        raise ConfigError(config_path, f"the factory of {registered.name!r} ({registered.label}) raised "
                                       f"{exception_summary(exc)} (at {raised_at(exc) or '?'})") from exc


def _refuse_problems(registered: Registered, config_path: str, made: object, protocol: str,
                     problems: list[str]) -> None:
    if problems:
        raise ConfigError(config_path, f"the factory of {registered.name!r} ({registered.label}) returned "
                                       f"{_a(made)}, not {_article(protocol)} {protocol} ({'; '.join(problems)})")


def _a(value: object) -> str:
    """``None``, ``a str``, ``an int``, ``a Pigeon``: what a value is, never what it holds."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{_article(name)} {name}"


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _close_quietly(made: object) -> None:
    """A half-valid storage backend may hold connections: release them before refusing it."""
    close = getattr(made, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # the refusal that follows is the error worth reporting
            close()
