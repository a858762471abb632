"""A small JSON Schema validator for the subset our own request schemas use.

The OpenAPI document and the handlers read the same schema dicts (``schemas.py``), so what the
document promises is exactly what the server enforces: unknown fields, wrong types, lengths,
patterns and enums are refused with the JSON path of the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaError", "validate"]

_TYPES: Mapping[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


class SchemaError(Exception):
    """A value does not match its schema: ``field`` is its dotted path, ``index`` its list entry."""

    def __init__(self, field: str, reason: str, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        super().__init__(f"{field}: {reason}")


def validate(value: Any, schema: Mapping[str, Any], path: str = "", index: int | None = None) -> list[SchemaError]:
    """Every mismatch between ``value`` and ``schema`` (empty when it matches)."""
    if "oneOf" in schema:
        return _one_of(value, schema["oneOf"], path, index)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [SchemaError(path or "<body>", f"must be {' or '.join(types)}", index)]
    errors: list[SchemaError] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(SchemaError(path, f"must be one of {', '.join(map(str, schema['enum']))}", index))
    if isinstance(value, str):
        errors += _string(value, schema, path, index)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        errors += _number(value, schema, path, index)
    elif isinstance(value, dict):
        errors += _object(value, schema, path, index)
    elif isinstance(value, list):
        errors += _array(value, schema, path, index)
    return errors


def _number(value: float, schema: Mapping[str, Any], path: str, index: int | None) -> list[SchemaError]:
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(SchemaError(path, f"must be at least {schema['minimum']}", index))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(SchemaError(path, f"must be at most {schema['maximum']}", index))
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _one_of(value: Any, options: list[Mapping[str, Any]], path: str, index: int | None) -> list[SchemaError]:
    # Our oneOf options always differ by JSON type (an object or a list of them): pick by type.
    for option in options:
        if _is_type(value, option["type"]):
            return validate(value, option, path, index)
    kinds = " or ".join(o["type"] for o in options)
    return [SchemaError(path or "<body>", f"must be {kinds}", index)]


def _string(value: str, schema: Mapping[str, Any], path: str, index: int | None) -> list[SchemaError]:
    errors = []
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: JSON can carry it, nothing else can
        return [SchemaError(path, f"is not valid Unicode text (unpaired surrogate at position {exc.start})", index)]
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(SchemaError(path, f"must be at least {schema['minLength']} characters", index))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(SchemaError(path, f"must be at most {schema['maxLength']} characters", index))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(SchemaError(path, "has an invalid format", index))
    return errors


def _object(value: dict[str, Any], schema: Mapping[str, Any], path: str, index: int | None) -> list[SchemaError]:
    errors = []
    props: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            errors.append(SchemaError(_join(path, name), "is required", index))
    for name, item in value.items():
        if name in props:
            errors += validate(item, props[name], _join(path, name), index)
        elif schema.get("additionalProperties", True) is False:
            errors.append(SchemaError(_join(path, name), "unknown field", index))
        elif isinstance(schema.get("additionalProperties"), Mapping):
            errors += validate(item, schema["additionalProperties"], _join(path, name), index)
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(SchemaError(path or "<body>", f"must have at most {schema['maxProperties']} fields", index))
    return errors


def _array(value: list[Any], schema: Mapping[str, Any], path: str, index: int | None) -> list[SchemaError]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(SchemaError(path or "<body>", f"must have at least {schema['minItems']} entries", index))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(SchemaError(path or "<body>", f"must have at most {schema['maxItems']} entries", index))
    if "items" in schema and not errors:
        top = not path  # the entries of a top-level list are reported by index, fields by name
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], "" if top else f"{path}[{i}]", i if top else index)
    return errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
