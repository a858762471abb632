"""The REST API at the edges: what its schema promises is what the engine accepts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from otpagent.server.schemas import MESSAGE_REQUEST, OTP_SEND
from otpagent.server.validation import validate
from tests.service.conftest import LiveServer


def test_options_on_a_message_lists_get_and_delete(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(run_workers=False)
    with live.client() as http:
        response = http.request("OPTIONS", "/v1/messages/msg_123")

    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed


def test_a_lone_surrogate_in_a_verify_recipient_is_a_422_naming_the_field(
        make_server: Callable[..., LiveServer]) -> None:
    live = make_server(run_workers=False)
    body = b'{"recipient": "+44770090\\ud800", "code": "123456"}'  # valid JSON, invalid Unicode
    with live.client() as http:
        response = http.post("/v1/otp/verify", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "recipient"
    assert "not valid Unicode" in response.json()["errors"][0]["reason"]


@pytest.mark.parametrize("field", ["content", "subject", "user_id"])
def test_a_lone_surrogate_in_a_message_field_is_a_422(make_server: Callable[..., LiveServer], field: str) -> None:
    live = make_server(run_workers=False)
    values = {"content": '"hi"', "subject": "null", "user_id": "null", field: '"x\\udfff"'}
    body = ('{"phone_number": "+447700900123", '
            + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}").encode()
    with live.client() as http:
        response = http.post("/v1/messages", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field
    assert live.agent.get_metrics()["database_stats"]["total_messages"] == 0


@pytest.mark.parametrize(("field", "value"), [("phone_number", "0"), ("phone_number", "447700900123"),
                                              ("email", "000"), ("email", "ada@localhost")])
def test_the_schema_refuses_recipients_the_engine_would_refuse(field: str, value: str) -> None:
    for schema in (MESSAGE_REQUEST, OTP_SEND):
        errors = validate({field: value, "content": "x"} if schema is MESSAGE_REQUEST else {field: value}, schema)
        assert {e.field for e in errors} == {field}


def test_the_schema_accepts_numbers_written_the_usual_ways() -> None:
    for number in ("+447700900123", "+44 7700 900123", "+1 (415) 555-2671", " +33.6.12.34.56.78 "):
        assert validate({"phone_number": number, "content": "x"}, MESSAGE_REQUEST) == []
