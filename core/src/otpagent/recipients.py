"""Recipient normalisation: phone numbers to E.164 (phonenumbers), email syntax (email-validator).

A number that is not valid is rejected with the number and the reason, so a typo never becomes
a send to the wrong person or a cryptic provider error later.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from otpagent.errors import InvalidRequest

__all__ = ["country_of", "normalise_email", "normalise_phone"]

def _parse_reason(phonenumbers: Any, exc: Any) -> str:
    """Why phonenumbers could not parse a number, in words a caller can act on."""
    error = phonenumbers.NumberParseException
    reasons = {
        error.INVALID_COUNTRY_CODE: "unknown or missing country code (use +<country code>)",
        error.NOT_A_NUMBER: "not a phone number",
        error.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
        error.TOO_SHORT_NSN: "too short",
        error.TOO_LONG: "too long",
    }
    return reasons.get(exc.error_type, str(exc))


def _phonenumbers() -> Any:
    """The phonenumbers module, imported on first use: its metadata makes it one of the
    dearest imports, and a process that never parses a number should not pay for it."""
    import phonenumbers

    return phonenumbers


def normalise_phone(value: str, field: str = "phone_number") -> str:
    """Return ``value`` in E.164 (``+447700900123``) or raise naming the number and why.

    Numbers must be international (``+`` and country code) and of a possible length for their
    country. Unallocated ranges are not rejected here: reserved test ranges (Ofcom's 07700 900xxx,
    Twilio's magic numbers) must stay usable, and the provider has the last word on reachability.
    """
    if not isinstance(value, str):
        raise InvalidRequest.single(field, f"must be a string, got {type(value).__name__}")
    e164 = _e164_or_reason(value.strip())
    if not e164.startswith("+"):
        raise InvalidRequest.single(field, f"{value!r} is not a valid phone number: {e164}")
    return e164


def country_of(e164: str) -> str | None:
    """ISO 3166 region code of an E.164 number (``GB``), or None when unknown.

    Served from the same cache as :func:`normalise_phone`: a number taken in as E.164 (as API
    callers send them) is parsed once for its validity, its E.164 form and its country.
    """
    parsed = _parsed(e164)
    return None if isinstance(parsed, str) else parsed.country()


class _Phone:
    """A number phonenumbers accepted: its E.164 form, and its country once someone asks.

    The country is worked out on first use only: for calling codes shared by several regions
    (+1, +44, +7...) phonenumbers tests the number against each region's ranges, which costs
    more than the parse itself, and most processes that take numbers in never need it. A
    number taken in by :func:`_canonical` keeps only its calling code until then (its
    ``PhoneNumber`` is built on that first use).
    """

    __slots__ = ("_country", "_number", "e164")

    def __init__(self, number: Any, e164: str) -> None:
        self._number = number  # a phonenumbers.PhoneNumber, or the calling code of a canonical e164
        self.e164 = e164
        self._country: str | bool | None = False  # False: not looked up yet

    def country(self) -> str | None:
        number = self._number  # read first: another thread sets the country before clearing it
        if number is not None and self._country is False:
            self._country = _country_of_number(_as_phone_number(number, self.e164))
            self._number = None  # no longer needed: the cache holds up to 65,536 of these
        return self._country  # type: ignore[return-value]  # never False once looked up


def _as_phone_number(number: Any, e164: str) -> Any:
    """``number`` as a ``phonenumbers.PhoneNumber`` (built from ``e164`` when it is a calling code)."""
    if isinstance(number, int):
        return _phonenumbers().PhoneNumber(country_code=number, national_number=int(e164[len(str(number)) + 1:]))
    return number


def _country_of_number(number: Any) -> str | None:
    phonenumbers = _phonenumbers()
    code = number.country_code or 0
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) != 1:  # shared calling code: phonenumbers tells the regions apart by range
        region = phonenumbers.region_code_for_number(number)
        if region and region != "ZZ":
            return str(region)
    # The calling code's one region or, for unallocated and test ranges of a shared code, its
    # main region (+44 -> GB), which is what allow-lists and pumping limits care about.
    main = phonenumbers.region_code_for_country_code(code)
    return None if main in (None, "ZZ") else str(main)


def _e164_or_reason(raw: str) -> str:
    """The E.164 form of ``raw`` (starts with ``+``), or why it is not a possible number."""
    parsed = _parsed(raw)
    return parsed if isinstance(parsed, str) else parsed.e164


@functools.lru_cache(maxsize=65536)
def _parsed(raw: str) -> _Phone | str:
    """``raw`` as phonenumbers reads it, or why it is not a possible number.

    Cached by the text alone, so every look at a number (the request itself, the abuse limits'
    recipient key, verification, the country for routing, allow-lists and pumping limits)
    parses it once: parsing is the dearest step of taking a message in.
    """
    phonenumbers = _phonenumbers()
    fast = _canonical(phonenumbers, raw)
    if fast is not None:
        return fast
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        return _parse_reason(phonenumbers, exc)
    if not phonenumbers.is_possible_number(number):
        return "wrong length for its country"
    return _Phone(number, str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)))


#: Already E.164: ``+``, a first digit that is not 0, 7 to 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _canonical(phonenumbers: Any, raw: str) -> _Phone | None:
    """``raw`` accepted without ``phonenumbers.parse`` when it is already in E.164 form and the
    parse could change nothing in it; None sends it through the full parse.

    Most numbers arrive like this (API callers send E.164), and the full parse, built for any
    national or punctuated form, costs several times more than the checks it ends in. Those
    checks are the library's own: its country codes, its national-prefix pattern and
    :func:`phonenumbers.is_possible_number`. What this skips is only what cannot apply to
    canonical digits (punctuation, extensions, national forms), and it declines whenever the
    parse might rewrite the number: a national number starting with 0 (Italian leading zeros,
    trunk prefixes) or one the country's national-prefix pattern matches (a ``+1 1...``).
    ``tests/core/test_phone_fast_path.py`` checks it against the full parse country by country.
    """
    if _E164.fullmatch(raw) is None:
        return None
    digits = raw[1:]
    for size in (1, 2, 3):  # calling codes are prefix-free: at most one of these is one
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if national[0] == "0" or _national_prefix_may_apply(code, national):
        return None
    return _Phone(code, raw) if _possible_length(code, len(national)) else None


@functools.cache
def _possible_length(code: int, length: int) -> bool:
    """:func:`phonenumbers.is_possible_number` of a number with calling code ``code`` and a
    national number of ``length`` digits not starting with 0: the library's check reads only
    that length against the calling code's main region (its possible and local-only lengths),
    so one answer serves every number of that shape."""
    phonenumbers = _phonenumbers()
    return bool(phonenumbers.is_possible_number(
        phonenumbers.PhoneNumber(country_code=code, national_number=10 ** (length - 1))))


def _national_prefix_may_apply(code: int, national: str) -> bool:
    """Whether the parse would try to strip a national prefix (or carrier code) from ``national``."""
    pattern = _national_prefix(code)
    if pattern is None:
        return False
    match = pattern.match(national)
    return match is not None and (match.end() > 0 or any(g is not None for g in match.groups()))


@functools.cache
def _national_prefix(code: int) -> re.Pattern[str] | None:
    """The compiled national-prefix-for-parsing pattern of the calling code's main region."""
    phonenumbers = _phonenumbers()
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


def normalise_email(value: str, field: str = "email") -> str:
    """Return the normalised address or raise naming it and the reason (syntax only, no DNS)."""
    if not isinstance(value, str):
        raise InvalidRequest.single(field, f"must be a string, got {type(value).__name__}")
    import email_validator  # on first use (it compiles its grammar on import)

    try:
        info = email_validator.validate_email(value.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidRequest.single(field, f"{value!r} is not a valid email address: {exc}") from None
    return str(info.normalized)
