"""SMS segment counting, done the way carriers bill it.

A body that fits the GSM 03.38 7-bit alphabet travels as GSM-7: 160 septets in one segment, or
153 per segment once it must be split (7 septets go to the concatenation header). Characters of
the extension table (``^{}[]~|\\€`` and form feed) take two septets, and a pair is never split
across segments. Any other character forces UCS-2 for the whole message: 70 UTF-16 code units in
one segment, 67 per segment when split, and a surrogate pair (an emoji) is never split either.
Cost estimates multiply the segment count by the price per segment, so this must be exact.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["Segmentation", "SmsEncoding", "count_segments", "is_gsm7"]

#: The GSM 03.38 default alphabet (one septet each); ESC itself is not a character of text.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each is sent as ESC + a septet, so it counts twice.
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


class SmsEncoding(enum.StrEnum):
    """The data coding a carrier uses for a body."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@attrs.frozen
class Segmentation:
    """How a body is carried: encoding, length in septets or code units, number of segments."""

    encoding: SmsEncoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 alphabet or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text)


def count_segments(text: str) -> Segmentation:
    """Encoding, length and segment count of ``text`` as one SMS (an empty body is one segment)."""
    if is_gsm7(text):
        widths = [2 if ch in GSM7_EXTENDED else 1 for ch in text]
        return Segmentation(SmsEncoding.GSM7, sum(widths), _pack(widths, GSM7_SINGLE, GSM7_PART))
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return Segmentation(SmsEncoding.UCS2, sum(widths), _pack(widths, UCS2_SINGLE, UCS2_PART))


def _pack(widths: list[int], single: int, part: int) -> int:
    """Segments needed for characters of ``widths`` units, never splitting one character."""
    if sum(widths) <= single:
        return 1
    segments, used = 1, 0
    for width in widths:
        if used + width > part:
            segments += 1
            used = 0
        used += width
    return segments
