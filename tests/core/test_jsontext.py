"""otpagent.jsontext: the storage's JSON text, orjson with the standard library's behaviour kept."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pytest

from otpagent import jsontext
from otpagent.model import Event
from otpagent.storage.rows import event_from_row, event_to_row

DOUBLES = [1764583000.123456, 0.1, 0.1 + 0.2, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, -0.0, 123.0, 2.5e-3]


@pytest.mark.parametrize("value", DOUBLES)
def test_doubles_read_back_bit_for_bit_both_ways(value: float) -> None:
    bits = struct.pack("<d", value)
    assert struct.pack("<d", json.loads(jsontext.dumps(value))) == bits
    assert struct.pack("<d", jsontext.loads(json.dumps(value))) == bits
    assert struct.pack("<d", jsontext.loads(jsontext.dumps(value))) == bits


def test_text_is_compact_utf8_and_keys_become_strings_as_json_does() -> None:
    value = {"name": "Zoë", 1: [True, None], "n": 3}
    assert jsontext.dumps(value) == '{"name":"Zoë","1":[true,null],"n":3}'
    assert jsontext.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))
    assert jsontext.dumps(("a", "b")) == '["a","b"]'


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    big = 2**70
    assert jsontext.loads(jsontext.dumps({"big": big})) == {"big": big}
    assert jsontext.loads(json.dumps([big, -big])) == [big, -big]


def test_text_written_by_earlier_releases_still_reads() -> None:
    # json.dumps' spacing and \u escapes, and NaN, which json.dumps wrote and orjson refuses.
    old = json.dumps({"reason": "caf\u00e9", "cost": float("nan"), "n": [1, 2]})
    assert "\\u00e9" in old and "NaN" in old
    value = jsontext.loads(old)
    assert value["reason"] == "café" and math.isnan(value["cost"]) and value["n"] == [1, 2]
    assert jsontext.loads(old.encode()) is not None  # bytes too, as drivers may hand them


def test_non_finite_floats_are_written_as_null_never_as_invalid_json() -> None:
    text = jsontext.dumps({"cost": float("inf")})
    assert json.loads(text) == {"cost": None}


def test_not_json_is_refused_with_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsontext.loads("{not json")
    with pytest.raises(TypeError):
        jsontext.dumps({"when": object()})


def test_event_data_round_trips_through_its_row() -> None:
    event = Event(type="attempt", message_id="msg_1", at=1764583000.25,
                  data={"channel": "SMS", "latency_ms": 12.345, "error_code": None, "number": 2})
    message_id, kind, at, data = event_to_row(event)
    row = {"type": kind, "message_id": message_id, "at": at, "data": data, "id": 7}
    assert event_from_row(row) == Event(type="attempt", message_id="msg_1", at=1764583000.25, data=dict(event.data),
                                        id=7)


def test_orjson_is_imported_on_first_use_not_with_otpagent() -> None:
    code = ("import sys; from otpagent import IntelligentOTPAgent; import otpagent.storage.rows; "
            "print('orjson' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
