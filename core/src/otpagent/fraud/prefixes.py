"""Where an OTP goes, as the fraud guard sees it: the destination prefix and the country.

A prefix is the country calling code followed by the first ``digits`` digits of the national
significant number (phonenumbers splits the two): ``+44 7700 900123`` with 4 digits is
``+447700``. Pumped numbers are bought in ranges an operator allocates together, so they share
their leading digits; legitimate users of the same range are rare next to a whole country's.
"""

from __future__ import annotations

import functools

import attrs

from otpagent.recipients import country_of

__all__ = ["Destination", "destination"]


@attrs.frozen
class Destination:
    prefix: str
    country: str


@functools.lru_cache(maxsize=65536)
def destination(e164: str, digits: int) -> Destination | None:
    """The prefix and ISO country of an E.164 number; None when phonenumbers cannot place it."""
    import phonenumbers

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    national = phonenumbers.national_significant_number(number)
    country = country_of(e164)
    if not number.country_code or not national or country is None:
        return None
    return Destination(prefix=f"+{number.country_code}{national[:digits]}", country=country)
