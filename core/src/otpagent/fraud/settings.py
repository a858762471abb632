"""``otp.fraud_guard``: the SMS-pumping guard's settings, checked by :func:`otpagent.settings.structure`.

One attrs frozen class, every error naming its key (``otp.fraud_guard.min_volume``). The
defaults are conservative, as Twilio's "Basic" protection level is: a prefix is judged only once
it has sent ``min_volume`` codes old enough to have been entered, and it is held only when its
volume rose AND its conversion fell far below its baseline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import attrs

from otpagent.settings import setting, structure

__all__ = ["PREFIX_PATTERN", "FraudGuardSettings", "parse_fraud_guard"]

PATH = "otp.fraud_guard"
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
PREFIX_PATTERN = re.compile(r"^\+[1-9][0-9]{0,14}$")


@attrs.frozen(kw_only=True)
class FraudGuardSettings:
    """See docs/fraud.md for what each setting does and why its default is what it is."""

    enabled: bool = setting(True)
    prefix_digits: int = setting(4, ge=1, le=8, doc="Digits of the national number that, after the country "
                                                    "calling code, make a prefix")
    window_seconds: float = setting(1800.0, ge=60, le=86400, doc="The recent window whose conversion is judged")
    verify_grace_seconds: float = setting(120.0, ge=0, le=3600, doc="Codes younger than this do not count as "
                                                                    "sent yet: their users are still typing them")
    min_volume: int = setting(30, ge=5, le=1_000_000, doc="Codes old enough to judge that a prefix must have "
                                                          "sent in the window before it can be held")
    collapse_ratio: float = setting(0.3, ge=0, le=1, doc="Held when the window's conversion is at most this "
                                                         "fraction of the baseline's")
    volume_factor: float = setting(3.0, ge=1, le=1000, doc="... and its request rate is at least this multiple "
                                                           "of its baseline rate")
    expected_conversion: float = setting(0.7, ge=0.01, le=1, doc="The conversion assumed for a prefix (and its "
                                                                 "country) without enough history")
    baseline_half_life_seconds: float = setting(7 * 86400.0, ge=3600, le=365 * 86400,
                                                doc="How fast the baseline forgets")
    hold_seconds: float = setting(3600.0, ge=60, le=7 * 86400, doc="The first hold; each new hold within "
                                                                   "max_hold_seconds of the last doubles it")
    max_hold_seconds: float = setting(43200.0, ge=60, le=30 * 86400)
    release_grace_seconds: float = setting(3600.0, ge=0, le=30 * 86400, doc="After an operator releases a "
                                                                             "prefix, it is not held again for "
                                                                             "this long")
    allow: tuple[str, ...] = setting((), doc='Countries ("GB") and prefixes ("+4477009") never held nor counted')
    flush_seconds: float = setting(1.0, ge=0, le=60, doc="How often each process publishes its counts to the "
                                                         "shared store (and re-reads holds)")

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / 30.0

    def allows(self, e164: str, country: str | None) -> bool:
        """Whether the allow-list covers the number (its country, or a prefix of it)."""
        return any(entry == country or (entry.startswith("+") and e164.startswith(entry)) for entry in self.allow)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.max_hold_seconds < self.hold_seconds:
            yield "max_hold_seconds", "must be at least hold_seconds"
        if self.verify_grace_seconds >= self.window_seconds:
            yield "verify_grace_seconds", "must be shorter than window_seconds"
        for i, entry in enumerate(self.allow):
            text = entry.strip()
            if not (_COUNTRY.match(text) or PREFIX_PATTERN.match(text)):
                yield f"allow[{i}]", (f"must be an ISO country code like \"GB\" or a prefix like \"+4477009\" "
                                      f"(+, country code, digits), got {entry!r}")

    def normalized(self) -> FraudGuardSettings:
        """Country codes upper-cased and entries stripped, as :meth:`allows` compares them."""
        allow = tuple(e.strip() if e.strip().startswith("+") else e.strip().upper() for e in self.allow)
        return attrs.evolve(self, allow=allow)


def parse_fraud_guard(section: Any, path: str = PATH) -> FraudGuardSettings:
    """The settings of an ``otp.fraud_guard`` object (absent: the defaults)."""
    return structure(FraudGuardSettings, {} if section is None else section, path=path).normalized()
