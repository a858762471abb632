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

cattrs is imported on the first call (:mod:`otpagent.settings._structure`), so ``import otpagent``
stays fast; the schema is built by :mod:`otpagent.settings._schema`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from otpagent.redact import MASK

if TYPE_CHECKING:
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
        if self.ge is not None and self.le is not None:
            return f"must be from {self.ge:g} to {self.le:g}"
        parts = []
        if low is not None:
            parts.append("positive" if self.gt == 0 else "non-negative" if self.ge == 0
                         else f"at least {low:g}" if self.ge is not None else f"more than {low:g}")
        if high is not None:
            parts.append(f"at most {high:g}" if self.le is not None else f"less than {high:g}")
        return "must be " + " and ".join(parts)


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
    from otpagent.settings._structure import structure_strictly

    return structure_strictly(cls, data, path)


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
    from otpagent.settings._schema import class_schema

    return class_schema(cls)


def _spec(field: attrs.Attribute[Any]) -> SettingSpec:
    spec = field.metadata.get(_META)
    return spec if isinstance(spec, SettingSpec) else SettingSpec()
