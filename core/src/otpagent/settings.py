"""Config sections as attrs classes, checked by cattrs: the one way core and plugins validate config.

Declare a section as an attrs class whose fields say their type and limits, then structure the
parsed JSON into it::

    @attrs.frozen
    class HttpSmsSettings:
        url: str = setting(doc="Where to POST each message")
        token: str = setting(secret=True)
        timeout_seconds: float = setting(10.0, gt=0, le=120)

    settings = structure(HttpSmsSettings, spec.api_config, path=f"channels.{spec.name}.api_config")

:func:`structure` is strict: an unknown key is an error naming it (with a "did you mean"), a
bool is not a number, a string is never turned into a number, and a JSON object or array must be
one. It reports *every* mistake in the section at once, as a :class:`~otpagent.errors.ConfigError`
whose ``errors`` list each one by its key path (``channels.sms.rate_limit.burst``,
``sinks[1].url``). Checks across fields go in a ``settings_problems(self)`` method that yields
``(key, reason)`` pairs. :func:`json_schema` describes the same class as JSON Schema, which is
how ``otpagent config schema`` publishes the config to editors.

cattrs is imported on the first call, so ``import otpagent`` stays fast.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from otpagent.errors import ConfigError
from otpagent.redact import MASK

if TYPE_CHECKING:
    import cattrs

    from otpagent.protocols import ChannelSpec

__all__ = ["SettingSpec", "describes", "json_schema", "setting", "settings_class_of", "structure", "structure_channel",
           "suggest"]

T = TypeVar("T")
_META = "otpagent.setting"


@attrs.frozen(kw_only=True)
class SettingSpec:
    """The limits and documentation of one field, kept in its attrs metadata by :func:`setting`."""

    key: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    pattern: str | None = None
    pattern_reason: str | None = None
    choices: tuple[Any, ...] | None = None
    doc: str | None = None
    secret: bool = False
    reason: str | None = None
    echo: bool = True

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the field's type) breaks a limit, or None."""
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._range_problem(value)
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(str(c) for c in self.choices)}, got {value!r}"
        if isinstance(value, str | tuple | list | Mapping) and self.min_length is not None \
                and len(value) < self.min_length:
            return "must not be empty" if self.min_length == 1 else f"must hold at least {self.min_length} items"
        if isinstance(value, str) and self.pattern is not None and not re.fullmatch(self.pattern, value):
            # A secret is never echoed: a misplaced one must not end up in logs.
            shown = f", got {value!r}" if self.echo and not self.secret else ""
            return f"{self.pattern_reason or f'must match {self.pattern}'}{shown}"
        return None

    def _range_problem(self, value: float) -> str | None:
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        too_low = (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
        too_high = (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
        if not (too_low or too_high):
            if self.choices is not None and value not in self.choices:
                return f"must be one of {', '.join(str(c) for c in self.choices)}, got {value!r}"
            return None
        if self.reason is not None:
            return self.reason
        if low is not None and high is not None:
            return f"must be from {low:g} to {high:g}"
        if self.gt == 0:
            return "must be positive"
        if self.ge == 0:
            return "must be non-negative"
        if low is not None:
            return f"must be {'at least' if self.ge is not None else 'more than'} {low:g}"
        return f"must be {'at most' if self.le is not None else 'less than'} {high:g}"


def setting(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    pattern: str | None = None,
    pattern_reason: str | None = None,
    choices: Iterable[Any] | None = None,
    doc: str | None = None,
    secret: bool = False,
    reason: str | None = None,
    echo: bool = True,
) -> Any:
    """An attrs field of a config section, with its limits (checked by :func:`structure` and
    published by :func:`json_schema`).

    ``key`` is the JSON key when it differs from the field name (``"from"``). ``ge``/``gt``/
    ``le``/``lt`` bound a number, ``min_length`` a string or list, ``pattern`` a string (a full
    match; ``pattern_reason`` is the error, e.g. "expected an account SID: AC + 32 hex digits"),
    ``choices`` any value. ``secret`` keeps the value out of ``repr()`` and error messages.
    ``echo=False`` keeps a value that breaks ``pattern`` out of the error (an identifier field
    where a secret is easily pasted by mistake). ``reason`` replaces the generated message when
    the value is of the wrong type or out of range (e.g. "must be at least 1 s: a shorter lease
    can lapse...").
    """
    spec = SettingSpec(key=key, ge=ge, gt=gt, le=le, lt=lt, min_length=min_length, pattern=pattern,
                       pattern_reason=pattern_reason, choices=None if choices is None else tuple(choices),
                       doc=doc, secret=secret, reason=reason, echo=echo)
    repr_: Any = (lambda v: "None" if v is None else repr(MASK)) if secret else True
    if factory is not None:
        return attrs.field(factory=factory, metadata={_META: spec}, repr=repr_)
    return attrs.field(default=default, metadata={_META: spec}, repr=repr_)


def structure(cls: type[T], data: Any, *, path: str = "") -> T:
    """``data`` (parsed JSON) as an instance of the attrs class ``cls``, checked strictly.

    Raises :class:`~otpagent.errors.ConfigError` naming every mistake by its key path under
    ``path`` (its ``errors`` holds one ``ConfigError`` per mistake).
    """
    from cattrs.errors import BaseValidationError

    try:
        return _converter().structure(data, cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError.combine([ConfigError(p, r) for p, r in _problems(exc, path)]) from None


def structure_channel(cls: type[T], spec: ChannelSpec) -> T:
    """A channel plugin's own keys of its section (``channels.<name>``), as ``cls``.

    The keys every channel takes (``plugin``, ``kind``, ``cost``, ``rate_limit``... the core
    checks them) are left out, unless ``cls`` declares one: give ``cls`` an ``api_config`` field
    (an attrs class) to check the provider settings, and any other keys of the plugin beside it.
    """
    from otpagent.config import COMMON_CHANNEL_KEYS

    declared = {_spec(f).key or f.name for f in attrs.fields(cast(Any, cls))}
    own = {k: v for k, v in spec.settings.items() if k not in COMMON_CHANNEL_KEYS or k in declared}
    return structure(cls, own, path=f"channels.{spec.name}")


F = TypeVar("F", bound=Callable[..., Any])


def describes(cls: type[Any] | str) -> Callable[[F], F]:
    """Mark a plugin's factory with the attrs class of its section, so ``otpagent config schema``
    publishes it (for a channel: its own keys, as :func:`structure_channel` checks them; for a
    strategy: its ``routing`` keys; for a sink: its entry's keys)::

        @describes(HttpSmsSection)
        def create_channel(spec: ChannelSpec) -> HttpSmsChannel: ...

    ``cls`` may be given as ``"package.module:ClassName"``, imported only when the schema is
    asked for, so that a plugin's entry point stays light at start-up.
    """

    def mark(factory: F) -> F:
        factory.otpagent_settings = cls  # type: ignore[attr-defined]
        return factory

    return mark


def settings_class_of(factory: Callable[..., Any]) -> type[Any] | None:
    """The attrs class a factory was marked with by :func:`describes`, if any."""
    cls = getattr(factory, "otpagent_settings", None)
    if isinstance(cls, str):
        import importlib

        module, _, name = cls.partition(":")
        cls = getattr(importlib.import_module(module), name)
    return cls if isinstance(cls, type) and attrs.has(cls) else None


def suggest(key: str, known: Iterable[str]) -> str:
    """The "unknown key" reason for ``key``: a close match when there is one, and what is known."""
    import difflib

    names = sorted(k for k in known if not k.startswith("$"))
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}expected one of {', '.join(names)})"


def json_schema(cls: type[Any]) -> dict[str, Any]:
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


# --- structuring ----------------------------------------------------------------------------


def _spec(field: attrs.Attribute[Any]) -> SettingSpec:
    spec = field.metadata.get(_META)
    return spec if isinstance(spec, SettingSpec) else SettingSpec()


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


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp) or tp


def _is_mapping(tp: Any) -> bool:
    return _origin(tp) in (dict, Mapping, typing.Mapping)


def _is_sequence(tp: Any) -> bool:
    return _origin(tp) in (list, tuple, frozenset, set) and not (
        _origin(tp) is tuple and len(typing.get_args(tp)) != 2)


@cache
def _converter() -> cattrs.Converter:
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for tp, hook in ((bool, _bool), (int, _int), (float, _float), (str, _str), (type(None), _none)):
        converter.register_structure_hook(tp, hook)
    converter.register_structure_hook_factory(_is_union, _union_hook)
    converter.register_structure_hook_factory(_is_mapping, _mapping_hook)
    converter.register_structure_hook_factory(_is_sequence, _sequence_hook)
    converter.register_structure_hook_factory(attrs.has, _attrs_hook)
    return converter


def _is_union(tp: Any) -> bool:
    return _origin(tp) in (typing.Union, types.UnionType)


_JSON_KINDS: tuple[tuple[Callable[[Any], bool], Callable[[Any], bool], str], ...] = (
    # (is this JSON value of the kind, can this type hold it, how to name the type)
    (lambda v: v is None, lambda t: t is type(None), "null"),
    (lambda v: isinstance(v, bool), lambda t: t is bool, "true or false"),
    (lambda v: isinstance(v, int) and not isinstance(v, bool), lambda t: t in (int, float), "an integer"),
    (lambda v: isinstance(v, float), lambda t: t is float, "a number"),
    (lambda v: isinstance(v, str), lambda t: t is str, "a string"),
    (lambda v: isinstance(v, Mapping), lambda t: attrs.has(t) or _is_mapping(t), "an object"),
    (lambda v: isinstance(v, list), _is_sequence, "a list"),
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
    if attrs.has(tp) or _is_mapping(tp):
        return "an object"
    return "a list" if _is_sequence(tp) else str(tp)


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
    build: Callable[[list[Any]], Any] = {list: list, set: frozenset, frozenset: frozenset}.get(_origin(tp), tuple)

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
    return tp is Any or tp is type(None) or (_is_union(tp) and type(None) in typing.get_args(tp))


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


# --- JSON Schema ----------------------------------------------------------------------------

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
        return json_schema(tp)
    origin, args = _origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in args]
        if all(set(o) == {"type"} for o in options):
            return {"type": [o["type"] for o in options]}
        return {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if _is_mapping(tp):
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if args else {}}
    if _is_sequence(tp):
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
