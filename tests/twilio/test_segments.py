"""Segment counting and cost estimates: what carriers bill for an SMS body."""

from __future__ import annotations

import pytest

from otpagent_twilio.segments import SmsEncoding, count_segments, is_gsm7
from tests.twilio.conftest import envelope


@pytest.mark.parametrize(("body", "segments"), [
    ("", 1),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
])
def test_gsm7_bodies_take_160_characters_then_153_per_part(body: str, segments: int) -> None:
    result = count_segments(body)

    assert result.encoding is SmsEncoding.GSM7
    assert result.units == len(body)
    assert result.segments == segments


def test_extension_table_characters_count_twice() -> None:
    assert count_segments("€" * 80).units == 160
    assert count_segments("€" * 80).segments == 1
    assert count_segments("€" * 81).segments == 2
    assert count_segments("{}[]~|^\\").units == 16


def test_an_extension_character_is_never_split_across_segments() -> None:
    body = "a" * 152 + "€" + "a" * 152  # 306 septets, but the € cannot straddle parts 1 and 2

    result = count_segments(body)

    assert result.units == 306
    assert result.segments == 3


@pytest.mark.parametrize(("body", "segments"), [
    ("ł" * 70, 1),
    ("ł" * 71, 2),
    ("ł" * 134, 2),
    ("ł" * 135, 3),
])
def test_unicode_bodies_take_70_code_units_then_67_per_part(body: str, segments: int) -> None:
    result = count_segments(body)

    assert result.encoding is SmsEncoding.UCS2
    assert result.segments == segments


def test_one_character_outside_gsm7_makes_the_whole_body_ucs2() -> None:
    gsm = "Your verification code is 482913. It expires in 5 minutes. Never share it with anyone, ok?"
    assert count_segments(gsm).segments == 1

    result = count_segments(gsm + " 😀")

    assert result.encoding is SmsEncoding.UCS2
    assert result.units == len(gsm) + 1 + 2  # the emoji is a surrogate pair
    assert result.segments == 2


def test_emoji_surrogate_pairs_are_never_split() -> None:
    body = "a" * 66 + "😀" * 2  # 70 units: fits one segment exactly
    assert count_segments(body).segments == 1

    body = "a" * 66 + "😀" * 3  # 72 units; part 1 ends at 66 (the pair would straddle 67)
    assert count_segments(body).segments == 2


def test_gsm7_alphabet_quirks() -> None:
    assert is_gsm7("Ç")            # capital C-cedilla is in the alphabet...
    assert not is_gsm7("ç")        # ...the small one is not
    assert is_gsm7("èéùìò£¥§¿¡ÄÖÑÜ")
    assert not is_gsm7("á")


def test_sms_cost_is_segments_times_the_destination_country_price(make_channel) -> None:  # type: ignore[no-untyped-def]
    channel = make_channel("sms", cost=0.01, section={"country_costs": {"GB": 0.04}})
    two_parts = "a" * 200

    assert channel.estimate_cost(envelope(two_parts, phone="+447700900123")) == pytest.approx(0.08)
    assert channel.estimate_cost(envelope(two_parts, phone="+14155552671")) == pytest.approx(0.02)
    assert channel.estimate_cost(envelope("short", phone="+447700900123")) == pytest.approx(0.04)


def test_whatsapp_and_voice_cost_one_price_per_message(make_channel) -> None:  # type: ignore[no-untyped-def]
    whatsapp = make_channel("whatsapp", cost=0.005, section={"country_costs": {"GB": 0.03}})
    voice = make_channel("voice", cost=0.013)
    long_body = "a" * 500

    assert whatsapp.estimate_cost(envelope(long_body, code=None)) == pytest.approx(0.03)
    assert voice.estimate_cost(envelope(long_body)) == pytest.approx(0.013)
