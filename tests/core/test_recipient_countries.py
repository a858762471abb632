"""Countries of E.164 numbers: phonenumbers decides, from the one parse intake already did."""

from __future__ import annotations

import phonenumbers
import pytest

from otpagent import recipients
from otpagent.recipients import country_of, normalise_phone


@pytest.mark.parametrize(("number", "country"), [
    ("+447700900123", "GB"),  # a shared calling code (+44: GB, GG, IM, JE), told apart by range
    ("+447781123456", "GG"),
    ("+16135550123", "CA"),  # +1: the North American plan's regions
    ("+12015550123", "US"),
    ("+33612345678", "FR"),  # a calling code with one region
    ("+80012345678", "001"),  # non-geographic (international freephone)
    ("+447000000000", "GB"),  # unallocated range of a shared code: its main region
])
def test_country_of_agrees_with_phonenumbers(number: str, country: str) -> None:
    assert country_of(number) == country
    parsed = phonenumbers.parse(number, None)
    found = phonenumbers.region_code_for_number(parsed)
    main = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    assert country == (found if found not in (None, "ZZ") else main)


def test_a_number_that_is_not_possible_has_no_country() -> None:
    assert country_of("+999") is None
    assert country_of("not a number") is None


def test_intake_and_the_country_share_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = phonenumbers.parse

    def counting(text: str, region: str | None = None) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return parse(text, region)

    monkeypatch.setattr(phonenumbers, "parse", counting)
    recipients._parsed.cache_clear()  # numbers other tests parsed must not hide this one's parses
    e164 = normalise_phone("+33 6 98 76 54 32")
    assert e164 == "+33698765432"
    assert country_of(e164) == country_of(e164) == "FR"
    assert normalise_phone(e164) == e164
    # The spaced text is parsed once; its E.164 form is canonical and is checked without one.
    assert calls == ["+33 6 98 76 54 32"]
