"""Request and answer bodies read and written by orjson, with the standard library's results.

``parse_json`` and ``JsonResponse`` take the fast path only where orjson gives exactly what
``json`` gave before; the rest (NaN, integers beyond 64 bits, UTF-16 bodies, malformed
documents) goes the standard way, with the same value or the same 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from starlette.responses import JSONResponse

from otpagent.server.bodies import JsonResponse, parse_json
from otpagent.server.problems import Problem

ANSWERS: list[Any] = [
    {"message_id": "m_0123", "status": "queued"},
    {"verified": False, "reason": "invalid"},
    {"message_ids": ["a", "b"], "nested": {"x": [1, 2.5, 1733139330.123, 0.0079]}},
    {"text": "Votre code: 123 456 \u2013 ok ✓ \u2028 \n\t\"quoted\" \\ /"},
    {"none": None, "big": 2**70, "negative": -(2**63)},
    [],
]


@pytest.mark.parametrize("content", ANSWERS)
def test_an_answer_is_byte_for_byte_starlettes(content: Any) -> None:
    assert JsonResponse(content).body == JSONResponse(content).body


def test_a_float_in_exponent_form_is_the_same_value() -> None:
    content = {"x": [1e-7, 1.7976931348623157e308, 5e-324]}
    assert json.loads(JsonResponse(content).body) == json.loads(JSONResponse(content).body) == content


def test_a_non_finite_float_is_refused_as_before() -> None:
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError):
            JSONResponse({"x": value})
        with pytest.raises(ValueError):
            JsonResponse({"x": value})


@pytest.mark.parametrize("raw", [
    b'{"phone_number": "+447700900123", "n": 1, "f": 0.1}',
    b'{"a": NaN, "b": -Infinity}',
    b'{"big": 123456789012345678901234567890, "small": -9223372036854775809}',
    b'{"phone": "+4477009001234567890123"}',
    '{"text": "caf\u00e9"}'.encode("utf-16"),
    b'{"dup": 1, "dup": 2}',
    b'"just a string"',
])
def test_a_body_reads_as_json_loads_reads_it(raw: bytes) -> None:
    got, expected = parse_json(raw), json.loads(raw)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"a": 1,}', "malformed JSON at line 1, column 9"),
    (b'{"a":\n  }', "malformed JSON at line 2, column 3"),
    (b"\xff\xfe\xfa", "UTF-8"),
])
def test_a_malformed_body_gets_the_same_400(raw: bytes, words: str) -> None:
    with pytest.raises(Problem) as refused:
        parse_json(raw)
    assert refused.value.status == 400 and words in refused.value.detail
