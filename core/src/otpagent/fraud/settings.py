"""``otp.fraud_guard``: the SMS-pumping guard's settings, validated in one place.

One attrs frozen class, parsed by :func:`parse_fraud_guard` from the config section, every error
naming its key (``otp.fraud_guard.min_volume``). The defaults are conservative, as Twilio's
"Basic" protection level is: a prefix is judged only once it has sent ``min_volume`` codes old
enough to have been entered, and it is held only when its volume rose AND its conversion fell
far below its baseline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from otpagent.errors import ConfigError

__all__ = ["PREFIX_PATTERN", "FraudGuardSettings", "parse_fraud_guard"]

PATH = "otp.fraud_guard"
_COUNTRY = re.compile(r"^[A-Z]{2}$")
PREFIX_PATTERN = re.compile(r"^\+[1-9][0-9]{0,14}$")


@attrs.frozen(kw_only=True)
class FraudGuardSettings:
    """See docs/fraud.md for what each setting does and why its default is what it is."""

    enabled: bool = True
    #: Digits of the national number that, after the country calling code, make a prefix.
    prefix_digits: int = 4
    #: The recent window whose conversion is judged (30 buckets of ``window_seconds / 30``).
    window_seconds: float = 1800.0
    #: Codes younger than this do not count as sent yet: their users are still typing them.
    verify_grace_seconds: float = 120.0
    #: Codes old enough to judge that a prefix must have sent in the window before it can be held.
    min_volume: int = 30
    #: Held when the window's conversion is at most this fraction of the baseline's.
    collapse_ratio: float = 0.3
    #: ... and its request rate is at least this multiple of its baseline rate.
    volume_factor: float = 3.0
    #: The conversion assumed for a prefix (and its country) without enough history.
    expected_conversion: float = 0.7
    #: How fast the baseline forgets (requests and conversions older than the window).
    baseline_half_life_seconds: float = 7 * 86400.0
    #: The first hold; each new hold within ``max_hold_seconds`` of the last doubles it.
    hold_seconds: float = 3600.0
    max_hold_seconds: float = 43200.0
    #: After an operator releases a prefix, the guard does not hold it again for this long.
    release_grace_seconds: float = 3600.0
    #: Countries (``"GB"``) and prefixes (``"+4477009"``) never held nor counted.
    allow: tuple[str, ...] = ()
    #: How often each process publishes its counts to the shared store (and re-reads holds).
    flush_seconds: float = 1.0

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / 30.0

    def allows(self, e164: str, country: str | None) -> bool:
        """Whether the allow-list covers the number (its country, or a prefix of it)."""
        return any(entry == country or (entry.startswith("+") and e164.startswith(entry)) for entry in self.allow)


_NUMBERS: dict[str, tuple[float, float]] = {
    "window_seconds": (60.0, 86400.0),
    "verify_grace_seconds": (0.0, 3600.0),
    "collapse_ratio": (0.0, 1.0),
    "volume_factor": (1.0, 1000.0),
    "expected_conversion": (0.01, 1.0),
    "baseline_half_life_seconds": (3600.0, 365 * 86400.0),
    "hold_seconds": (60.0, 7 * 86400.0),
    "max_hold_seconds": (60.0, 30 * 86400.0),
    "release_grace_seconds": (0.0, 30 * 86400.0),
    "flush_seconds": (0.0, 60.0),
}
_INTEGERS: dict[str, tuple[int, int]] = {"prefix_digits": (1, 8), "min_volume": (5, 1_000_000)}


def parse_fraud_guard(section: Any, path: str = PATH) -> FraudGuardSettings:
    """The settings of an ``otp.fraud_guard`` object (absent: the defaults)."""
    if section is None:
        return FraudGuardSettings()
    if not isinstance(section, Mapping):
        raise ConfigError(path, f"must be a JSON object, got {type(section).__name__}")
    known = {f.name for f in attrs.fields(FraudGuardSettings)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{path}.{key}", f"unknown key (expected one of {', '.join(sorted(known))})")
        values[key] = _value(str(key), value, f"{path}.{key}")
    settings = FraudGuardSettings(**values)
    if settings.max_hold_seconds < settings.hold_seconds:
        raise ConfigError(f"{path}.max_hold_seconds", "must be at least hold_seconds")
    if settings.verify_grace_seconds >= settings.window_seconds:
        raise ConfigError(f"{path}.verify_grace_seconds", "must be shorter than window_seconds")
    return settings


def _value(key: str, value: Any, path: str) -> Any:
    if key == "enabled":
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if key == "allow":
        return _allow(value, path)
    if key in _INTEGERS:
        low, high = _INTEGERS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(path, f"must be an integer from {low} to {high}, got {value!r}")
        return value
    low_f, high_f = _NUMBERS[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low_f <= value <= high_f:
        raise ConfigError(path, f"must be a number from {low_f:g} to {high_f:g}, got {value!r}")
    return float(value)


def _allow(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, "must be a list of country codes (\"GB\") and prefixes (\"+4477009\")")
    out = []
    for i, entry in enumerate(value):
        text = entry.strip() if isinstance(entry, str) else ""
        text = text.upper() if not text.startswith("+") else text
        if not (_COUNTRY.match(text) or PREFIX_PATTERN.match(text)):
            raise ConfigError(f"{path}[{i}]", f"must be an ISO country code like \"GB\" or a prefix like "
                                              f"\"+4477009\" (+, country code, digits), got {entry!r}")
        out.append(text)
    return tuple(out)
