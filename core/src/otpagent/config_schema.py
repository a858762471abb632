"""The whole config as one JSON Schema: the core's sections, and each loaded plugin's own keys.

A plugin contributes by marking its factory with :func:`otpagent.settings.describes`; its
section then gets the class's properties (beside the keys the core reads) when the section
names that plugin, through ``if``/``then`` on ``plugin`` (channels, sinks), ``strategy``
(routing) or ``backend`` (storage).
"""

from __future__ import annotations

from typing import Any

from otpagent.config import ChannelSection, ConfigFile, RoutingSection, SinkSection, StorageSection
from otpagent.plugins import Registry
from otpagent.registration import PluginKind
from otpagent.server.settings import ServerSection
from otpagent.settings import json_schema, settings_class_of

__all__ = ["SCHEMA_DIALECT", "config_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of ``config.json`` for the plugins in ``registry``."""
    root = json_schema(ConfigFile)
    props = root["properties"]
    props["channels"] = {"type": ["object", "null"], "description": props["channels"].get("description", ""),
                         "additionalProperties": _by_plugin(registry, "channels", ChannelSection, "plugin")}
    props["routing"] = _by_plugin(registry, "routing_strategies", RoutingSection, "strategy", default="priority")
    props["storage"] = _by_plugin(registry, "storage_backends", StorageSection, "backend", default="sqlite")
    props["sinks"] = {"type": "array", "items": _by_plugin(registry, "event_sinks", SinkSection, "plugin")}
    props["server"] = json_schema(ServerSection)
    return {"$schema": SCHEMA_DIALECT, "title": "otpagent config.json", **root}


def _by_plugin(registry: Registry, kind: PluginKind, core: type[Any], selector: str,
               default: str | None = None) -> dict[str, Any]:
    """The core's keys of a section, and a described plugin's own keys when it is the one named
    (or, for ``default``, when none is named).

    A section naming a plugin that describes its keys is closed (an unknown key is flagged);
    one naming a plugin that does not stays open, since only the plugin knows its keys.
    """
    base = json_schema(core)
    base.pop("required", None)
    base["additionalProperties"] = True
    cases = []
    for name, registered in sorted(registry.table(kind).items()):
        cls = settings_class_of(registered.factory)
        if cls is None:
            continue
        own = json_schema(cls)
        cases.append({
            "if": {"properties": {selector: {"const": name}}, **({} if name == default else {"required": [selector]})},
            "then": {"properties": {**base["properties"], **own["properties"]}, "additionalProperties": False,
                     **({"required": own["required"]} if "required" in own else {})},
        })
    if cases:
        base["allOf"] = cases
    return base
