"""The JSON Schema of an attrs settings class (:func:`otpagent.settings.json_schema`)."""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs

from otpagent.settings import SettingSpec, _spec
from otpagent.settings._structure import is_mapping, is_sequence, type_origin

__all__ = ["class_schema"]


def class_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of an attrs settings class: types, limits, defaults, docs, and
    ``additionalProperties: false`` so an editor flags an unknown key."""
    attrs.resolve_types(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        spec = _spec(field)
        name = spec.key or field.name
        schema = _type_schema(field.type)
        _add_limits(schema, spec)
        if spec.doc:
            schema["description"] = spec.doc
        if field.default is attrs.NOTHING:
            required.append(name)
        elif not isinstance(field.default, attrs.Factory) and _is_json(field.default) and not spec.secret:  # type: ignore[arg-type]
            schema["default"] = list(field.default) if isinstance(field.default, tuple) else field.default
        properties[name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split("\n\n")[0].split())
    if required:
        out["required"] = required
    return out


_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"},
    type(None): {"type": "null"},
}


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if tp is Any:
        return {}
    if attrs.has(tp):
        return class_schema(tp)
    kind, args = type_origin(tp), typing.get_args(tp)
    if kind in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in args]
        if all(set(o) == {"type"} for o in options):
            return {"type": [o["type"] for o in options]}
        return {"anyOf": options}
    if kind is typing.Literal:
        return {"enum": list(args)}
    if is_mapping(tp):
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if args else {}}
    if is_sequence(tp):
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    return {}


_ENV_REFERENCE = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"


def _add_limits(schema: dict[str, Any], spec: SettingSpec) -> None:
    for name, keyword in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"),
                          ("lt", "exclusiveMaximum"), ("pattern", "pattern")):
        value = getattr(spec, name)
        if value is not None:
            # A pattern also lets "${NAME}" through: the file is checked before interpolation.
            schema[keyword] = f"^(?:{value})$|{_ENV_REFERENCE}" if name == "pattern" else value
    if spec.min_length is not None:
        schema["minItems" if schema.get("type") == "array" else "minLength"] = spec.min_length
    if spec.choices is not None:
        nullable = "null" in schema.get("type", ())
        schema["enum"] = [*spec.choices, *([None] if nullable else [])]


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple | list) and all(_is_json(v) for v in value)
