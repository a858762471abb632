"""Numbers already in E.164 skip ``phonenumbers.parse``: checked against the full parse.

The fast path (``recipients._canonical``) may only accept what the full parse accepts, with the
same E.164 form and the same parsed number; when in doubt it must decline, and the full parse
then decides (and words the reason for a bad number).
"""

from __future__ import annotations

import random

import phonenumbers
import pytest

from otpagent import recipients
from otpagent.errors import InvalidRequest
from otpagent.recipients import country_of, normalise_phone


def _full(raw: str) -> tuple[str, int, int] | None:
    """What the full parse makes of ``raw``: (E.164, calling code, national number), or None."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, number.country_code or 0, number.national_number or 0


def _corpus() -> list[str]:
    """Every calling code, every national length from 4 to 14 digits (within E.164's 15), each
    leading digit 0-9 (national prefixes and trunk zeros live there), random digits after."""
    rng = random.Random(17)
    numbers = []
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(4, 15 - len(str(code)) + 1):
            for lead in "0123456789":
                rest = "".join(rng.choice("0123456789") for _ in range(length - 1))
                numbers.append(f"+{code}{lead}{rest}")
    return numbers


def test_the_fast_path_never_disagrees_with_the_full_parse() -> None:
    accepted = 0
    for raw in _corpus():
        fast = recipients._canonical(phonenumbers, raw)
        if fast is None:
            continue
        accepted += 1
        full = _full(raw)
        assert full is not None, f"{raw}: accepted without a parse, but the parse rejects it"
        number = recipients._as_phone_number(fast._number, fast.e164)
        assert (fast.e164, number.country_code, number.national_number) == full, raw
    assert accepted > 2_000, "the fast path should take most well-formed numbers"


@pytest.mark.parametrize("raw", [
    "+447700900123", "+12125550123", "+4915112345678", "+33612345678", "+919876543210",
    "+5511987654321", "+8613812345678", "+61412345678", "+80012345678",
])
def test_common_e164_numbers_take_the_fast_path(raw: str) -> None:
    fast = recipients._canonical(phonenumbers, raw)
    assert fast is not None and fast.e164 == raw
    full = phonenumbers.parse(raw, None)
    assert fast.country() == (country_of(raw)) == recipients._country_of_number(full)


@pytest.mark.parametrize(("raw", "why"), [
    ("+3906123456", "an Italian leading zero: the parse keeps it apart"),
    ("+112125550123", "+1's national prefix 1: the parse strips it"),
    ("+4407700900123", "a trunk zero after the calling code: the parse strips it"),
    ("+447700 900123", "punctuation: only the parse reads it"),
    ("+99912345678", "no such calling code: the parse words the reason"),
    ("+4412", "too short for E.164"),
])
def test_the_fast_path_declines_what_the_parse_may_rewrite(raw: str, why: str) -> None:
    assert recipients._canonical(phonenumbers, raw) is None, why


def test_what_the_fast_path_declines_is_still_normalised_or_refused_by_the_parse() -> None:
    recipients._parsed.cache_clear()
    assert normalise_phone("+4407700900123") == "+447700900123"
    assert normalise_phone("+3906123456") == "+3906123456"
    with pytest.raises(InvalidRequest, match=r"'\+99912345678' is not a valid phone number: unknown or missing"):
        normalise_phone("+99912345678")
    with pytest.raises(InvalidRequest, match="wrong length for its country"):
        normalise_phone("+4477009001234567")
