"""Where an OTP goes, as the fraud guard sees it: the destination prefix and the country.

A prefix is the country calling code followed by the first ``digits`` digits of the national
significant number: ``+44 7700 900123`` with 4 digits is ``+447700``. Pumped numbers are bought
in ranges an operator allocates together, so they share their leading digits; legitimate users
of one range are few next to a whole country's.

The calling code is found from phonenumbers' table (calling codes are prefix-free), without
parsing the number; the country is that of the first number seen in the prefix (parsed once),
which is exact wherever the prefix's digits decide the region (+1 with at least the 3 digits of
the area code, +44 7781 for Guernsey, +7 7 for Kazakhstan).
"""

from __future__ import annotations

import functools
import threading

import attrs

from otpagent.recipients import country_of

__all__ = ["Destination", "destination"]

_COUNTRIES: dict[str, str] = {}
_COUNTRIES_LIMIT = 65536
_lock = threading.Lock()


@attrs.frozen
class Destination:
    prefix: str
    country: str


@functools.cache
def _calling_codes() -> frozenset[str]:
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

    return frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)


def destination(e164: str, digits: int) -> Destination | None:
    """The prefix and ISO country of an E.164 number; None when it cannot be placed."""
    codes = _calling_codes()
    code = next((e164[1:n] for n in (2, 3, 4) if e164[1:n] in codes), None)
    if code is None or not e164[1:].isdigit():
        return None
    prefix = e164[: 1 + len(code) + digits]
    country = _COUNTRIES.get(prefix)
    if country is None:
        country = country_of(e164)
        if country is None:
            return None
        with _lock:
            if len(_COUNTRIES) >= _COUNTRIES_LIMIT:
                _COUNTRIES.clear()
            _COUNTRIES[prefix] = country
    return Destination(prefix=prefix, country=country)
