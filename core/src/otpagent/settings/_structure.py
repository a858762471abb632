"""How :func:`otpagent.settings.structure` works: strict cattrs hooks, and cattrs' error tree
turned into key paths. Imported on the first check, with cattrs."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from otpagent.errors import ConfigError
from otpagent.settings import SettingSpec, _spec, suggest

if TYPE_CHECKING:
    import cattrs

__all__ = ["is_mapping", "is_sequence", "is_union", "structure_strictly", "type_origin"]

T = TypeVar("T")


def structure_strictly(cls: type[T], data: Any, path: str) -> T:
    """See :func:`otpagent.settings.structure`."""
    from cattrs.errors import BaseValidationError

    try:
        return _converter().structure(data, cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError.combine([ConfigError(p, r) for p, r in _problems(exc, path)]) from None


def _describe(value: Any) -> str:
    """A value for an error message; strings are not echoed (one might be a misplaced secret)."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_describe(value)}")
    return value


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {_describe(value)}")
    return value


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a number, got {_describe(value)}")
    return float(value)


def _str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_describe(value)}")
    return value


def _none(value: Any, _: Any) -> None:
    if value is not None:
        raise ValueError(f"must be null, got {_describe(value)}")


def type_origin(tp: Any) -> Any:
    return typing.get_origin(tp) or tp


def is_mapping(tp: Any) -> bool:
    return type_origin(tp) in (dict, Mapping, typing.Mapping)


def is_sequence(tp: Any) -> bool:
    return type_origin(tp) in (list, tuple, frozenset, set) and not (
        type_origin(tp) is tuple and len(typing.get_args(tp)) != 2)


@cache
def _converter() -> cattrs.Converter:
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for tp, hook in ((bool, _bool), (int, _int), (float, _float), (str, _str), (type(None), _none)):
        converter.register_structure_hook(tp, hook)
    converter.register_structure_hook_factory(is_union, _union_hook)
    converter.register_structure_hook_factory(is_mapping, _mapping_hook)
    converter.register_structure_hook_factory(is_sequence, _sequence_hook)
    converter.register_structure_hook_factory(attrs.has, _attrs_hook)
    return converter


def is_union(tp: Any) -> bool:
    return type_origin(tp) in (typing.Union, types.UnionType)


_JSON_KINDS: tuple[tuple[Callable[[Any], bool], Callable[[Any], bool], str], ...] = (
    # (is this JSON value of the kind, can this type hold it, how to name the type)
    (lambda v: v is None, lambda t: t is type(None), "null"),
    (lambda v: isinstance(v, bool), lambda t: t is bool, "true or false"),
    (lambda v: isinstance(v, int) and not isinstance(v, bool), lambda t: t in (int, float), "an integer"),
    (lambda v: isinstance(v, float), lambda t: t is float, "a number"),
    (lambda v: isinstance(v, str), lambda t: t is str, "a string"),
    (lambda v: isinstance(v, Mapping), lambda t: attrs.has(t) or is_mapping(t), "an object"),
    (lambda v: isinstance(v, list), is_sequence, "a list"),
)


def _union_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """A union is told apart by the JSON value's kind: a number, a string, an object..."""
    options = typing.get_args(tp)
    names = [_type_name(t) for t in options]
    expected = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]

    def structure_union(value: Any, _: Any) -> Any:
        for is_kind, holds, _name in _JSON_KINDS:
            if is_kind(value):
                for option in options:
                    if holds(option):
                        return converter.get_structure_hook(option)(value, option)
        raise ValueError(f"must be {expected}, got {_describe(value)}")

    return structure_union


def _type_name(tp: Any) -> str:
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if attrs.has(tp) or is_mapping(tp):
        return "an object"
    return "a list" if is_sequence(tp) else str(tp)


def _mapping_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.errors import IterableValidationError, IterableValidationNote

    args = typing.get_args(tp)
    key_type, value_type = args if args else (Any, Any)
    key_hook, value_hook = converter.get_structure_hook(key_type), converter.get_structure_hook(value_type)

    def structure_mapping(value: Any, _: Any) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a JSON object, got {_describe(value)}")
        out, errors = {}, []
        for k, v in value.items():
            try:
                out[key_hook(k, key_type)] = value_hook(v, value_type)
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote(f"@ key {k!r}", k, value_type)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return out

    return structure_mapping


def _sequence_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.errors import IterableValidationError, IterableValidationNote

    args = typing.get_args(tp)
    item_type = args[0] if args else Any
    item_hook = converter.get_structure_hook(item_type)
    build: Callable[[list[Any]], Any] = {list: list, set: frozenset, frozenset: frozenset}.get(type_origin(tp), tuple)

    def structure_sequence(value: Any, _: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a JSON array, got {_describe(value)}")
        out, errors = [], []
        for i, item in enumerate(value):
            try:
                out.append(item_hook(item, item_type))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote(f"@ index {i}", i, item_type)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
        return build(out)

    return structure_sequence


def _attrs_hook(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.errors import AttributeValidationNote, ClassValidationError
    from cattrs.gen import make_dict_structure_fn, override

    attrs.resolve_types(cls)
    overrides = {}
    for field in attrs.fields(cls):
        spec = _spec(field)
        overrides[field.name] = override(rename=spec.key, struct_hook=_checked(
            converter.get_structure_hook(field.type), spec))
    generated = make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
    keys = {f.name: _spec(f).key or f.name for f in attrs.fields(cls)}

    def structure_section(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a JSON object, got {_describe(value)}")
        try:
            instance = generated(value, cls)
        except (ValueError, TypeError) as exc:  # an attrs validator or __attrs_post_init__ refused
            if isinstance(exc, ClassValidationError):
                raise
            raise ClassValidationError(f"While building {cls.__name__}", [exc], cls) from None
        problems = getattr(instance, "settings_problems", None)
        found = list(problems()) if problems else []
        if found:
            errors = []
            for key, reason in found:
                error = ValueError(reason)
                error.__notes__ = [AttributeValidationNote(f"@ attribute {key}", key, Any)]
                errors.append(error)
            raise ClassValidationError(f"While checking {cls.__name__}", errors, cls)
        return instance

    structure_section.keys = keys  # type: ignore[attr-defined]
    _KEYS[cls] = keys
    return structure_section


_KEYS: dict[type[Any], dict[str, str]] = {}


def _allows_none(tp: Any) -> bool:
    return tp is Any or tp is type(None) or (is_union(tp) and type(None) in typing.get_args(tp))


def _missing(spec: SettingSpec) -> str:
    """The reason for a missing (or null) key that must be set: what it is for, when the field says."""
    doc = spec.doc
    return f"missing: {doc[0].lower()}{doc[1:]}" if doc else "missing: this key must be set"


def _checked(hook: Callable[[Any, Any], Any], spec: SettingSpec) -> Callable[[Any, Any], Any]:
    def structure_field(value: Any, tp: Any) -> Any:
        if value is None and not _allows_none(tp):
            raise ValueError(_missing(spec))
        try:
            result = hook(value, tp)
        except ValueError:
            if spec.reason is None:
                raise
            raise ValueError(f"{spec.reason}, got {_describe(value)}") from None
        problem = spec.problem(result)
        if problem is not None:
            raise ValueError(problem)
        return result

    return structure_field


# --- cattrs' errors as key paths ------------------------------------------------------------


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _problems(exc: BaseException, path: str) -> list[tuple[str, str]]:
    from cattrs.errors import (
        AttributeValidationNote,
        BaseValidationError,
        ClassValidationError,
        ForbiddenExtraKeysError,
        IterableValidationNote,
    )

    if isinstance(exc, BaseValidationError):
        keys = _KEYS.get(exc.cl, {}) if isinstance(exc, ClassValidationError) else {}
        out = []
        # Unknown keys first: a misspelt key is usually why a required one is missing.
        for sub in sorted(exc.exceptions, key=lambda e: not isinstance(e, ForbiddenExtraKeysError)):
            where = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    where = _join(path, keys.get(note.name, note.name))
                elif isinstance(note, IterableValidationNote):
                    where = _join(path, note.index)
            if isinstance(sub, KeyError) and isinstance(exc, ClassValidationError):
                out.append((where, _required(exc.cl, where.rsplit(".", 1)[-1])))
                continue
            out.extend(_problems(sub, where))
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        known = _KEYS.get(exc.cl, {}).values()
        return [(_join(path, key), suggest(key, known)) for key in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError):
        return [(path, "required")]
    if isinstance(exc, ConfigError):
        return [(e.path or path, e.reason) for e in exc.errors]
    return [(path, str(exc))]


def _required(cls: type[Any], key: str) -> str:
    return _missing(next((_spec(f) for f in attrs.fields(cls) if (_spec(f).key or f.name) == key), SettingSpec()))
