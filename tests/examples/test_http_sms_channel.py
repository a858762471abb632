"""The ``http-sms`` example channel on its own: what goes on the wire, how each answer of the fake
gateway is classified, timeouts, connection reuse, and the config checks."""

from __future__ import annotations

import socket
from email.utils import formatdate
from typing import Any

import pytest

from otpagent import ConfigError
from otpagent.model import FailureScope, MessageType, Outcome, SendResult
from otpagent_http_sms import create_http_sms_channel
from otpagent_http_sms.channel import sms_parts
from otpagent_http_sms.classify import MAX_RETRY_AFTER_SECONDS, classify_answer, parse_retry_after
from tests.conftest import wait_for
from tests.examples.conftest import RECIPIENT, SENDER, api_config, channel_spec, envelope
from tests.examples.fake_sms_gateway import TOKEN, FakeSmsGateway

NOW = 1_795_651_200.0  # 2026-11-26 00:00:00 UTC, a whole second so HTTP dates are exact
WRONG_TOKEN = "revoked_" + "5e" * 12


def test_a_send_posts_the_gateways_json_with_the_bearer_token(gateway: FakeSmsGateway, make_channel: Any) -> None:
    channel = make_channel()

    result = channel.send(envelope(message_id="m-42"))

    assert result.outcome is Outcome.ACCEPTED and result.provider_message_id.startswith("gw_")
    (request,) = gateway.requests
    assert request.path == "/v1/messages" and request.authorization == f"Bearer {TOKEN}"
    assert request.content_type == "application/json"
    assert request.body == {"to": RECIPIENT, "from": SENDER, "text": "Your Acme code is 482913.", "reference": "m-42"}


def test_the_cost_is_what_the_gateway_billed_else_the_configured_price_per_part(
        gateway: FakeSmsGateway, make_channel: Any) -> None:
    channel = make_channel(cost=0.04)
    long_text = "x" * 200  # two GSM-7 parts

    assert channel.send(envelope(long_text, code=None, message_type=MessageType.ALERT)).cost == pytest.approx(0.08)
    gateway.cost = 0.035
    assert channel.send(envelope(long_text, code=None, message_type=MessageType.ALERT)).cost == pytest.approx(0.035)


@pytest.mark.parametrize(("status", "code", "retry_after", "expected"), [
    (429, "rate_limited", "30", SendResult.transient("x", code="rate_limited", retry_after=30.0)),
    (429, "rate_limited", formatdate(NOW + 120, usegmt=True),
     SendResult.transient("x", code="rate_limited", retry_after=120.0)),
    (503, "unavailable", None, SendResult.transient("x", code="unavailable")),
    (500, "internal", None, SendResult.transient("x", code="internal")),
    (400, "invalid_recipient", None, SendResult.permanent("x", code="invalid_recipient", scope=FailureScope.MESSAGE)),
    (422, "text_rejected", None, SendResult.permanent("x", code="text_rejected", scope=FailureScope.MESSAGE)),
    (403, "account_suspended", None,
     SendResult.permanent("x", code="account_suspended", scope=FailureScope.CHANNEL)),
])
def test_each_gateway_answer_is_classified(gateway: FakeSmsGateway, make_channel: Any, status: int, code: str,
                                           retry_after: str | None, expected: SendResult) -> None:
    gateway.answer(RECIPIENT, status, code=code, message="what the gateway says", retry_after=retry_after)
    channel = make_channel(clock=lambda: NOW)

    result = channel.send(envelope())

    assert (result.outcome, result.code, result.scope, result.retry_after) == \
        (expected.outcome, expected.code, expected.scope, expected.retry_after)
    assert result.reason == f"gateway answered HTTP {status}: what the gateway says"


def test_a_revoked_token_condemns_the_channel_and_the_echoed_token_is_masked(
        gateway: FakeSmsGateway, make_channel: Any) -> None:
    channel = make_channel(token=WRONG_TOKEN)

    result = channel.send(envelope())

    assert (result.outcome, result.scope, result.code) == (Outcome.PERMANENT, FailureScope.CHANNEL, "invalid_token")
    assert result.reason == "gateway answered HTTP 401: the token *** is not valid for any account"
    assert WRONG_TOKEN not in repr(result)


def test_a_gateway_that_does_not_answer_in_time_is_a_transient_timeout(
        gateway: FakeSmsGateway, make_channel: Any) -> None:
    gateway.hold(RECIPIENT)
    channel = make_channel(timeout_seconds=0.2)

    result = channel.send(envelope())

    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "timeout")
    assert result.reason == "no answer from the gateway within 0.2s"


def test_a_gateway_that_refuses_connections_is_transient() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = {"base_url": f"http://127.0.0.1:{port}", "token": TOKEN, "from": SENDER, "timeout_seconds": 2}
    channel = create_http_sms_channel(channel_spec(api))
    try:
        result = channel.send(envelope())
    finally:
        channel.close()

    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "connection")
    assert result.reason == "cannot reach the gateway (ConnectError)"


def test_sends_reuse_one_connection_and_close_releases_it(gateway: FakeSmsGateway, make_channel: Any) -> None:
    channel = make_channel()

    results = [channel.send(envelope(message_id=f"m-{i}")) for i in range(3)]

    assert all(r.ok for r in results)
    assert len(gateway.connections) == 1 and {r.client_port for r in gateway.requests} == set(gateway.connections)
    channel.close()
    assert wait_for(lambda: gateway.open_connections == 0, 5), "close() left the connection open"


def test_an_otp_whose_code_is_gone_is_refused_without_calling_the_gateway(
        gateway: FakeSmsGateway, make_channel: Any) -> None:
    result = make_channel().send(envelope("Your Acme code is {code}.", code=None))

    assert (result.outcome, result.code) == (Outcome.PERMANENT, "no-code")
    assert gateway.requests == []


def test_supports_check_and_estimate_cost(make_channel: Any) -> None:
    channel = make_channel(cost=0.05, max_length=200)

    assert channel.supports(envelope()) and not channel.supports(envelope(phone=None))
    assert channel.check(envelope("x" * 200)) is None
    assert channel.check(envelope("x" * 201)) == "text is 201 characters; the gateway allows at most 200"
    assert channel.estimate_cost(envelope("x" * 160)) == pytest.approx(0.05)
    assert channel.estimate_cost(envelope("x" * 161)) == pytest.approx(0.10)
    assert channel.estimate_cost(envelope("ü" * 70)) == pytest.approx(0.05)  # in the GSM alphabet
    assert channel.estimate_cost(envelope("ł" * 71)) == pytest.approx(0.10)  # UCS-2: 70 a part, 67 when split


def test_sms_parts_counts_like_the_carriers() -> None:
    assert [sms_parts("a" * n) for n in (0, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]
    assert sms_parts("€" * 80) == 1 and sms_parts("€" * 81) == 2  # extended characters take two septets
    assert [sms_parts("ж" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]
    assert sms_parts("🙂" * 35) == 1 and sms_parts("🙂" * 36) == 2  # outside the BMP: two UCS-2 units


def test_the_channel_and_its_settings_never_show_the_token(make_channel: Any) -> None:
    channel = make_channel()

    assert TOKEN not in repr(channel) and TOKEN not in repr(channel.settings)
    assert repr(channel).startswith("HttpSmsChannel(name='SMS', base_url='http://127.0.0.1:")


# -- classification as a pure function ---------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "expected"), [
    (202, b'{"id": "gw_1"}', (Outcome.ACCEPTED, None, None, "gw_1")),
    (200, b'{"id": 17, "cost": 0.5}', (Outcome.ACCEPTED, None, None, "17")),
    (202, b"queued", (Outcome.ACCEPTED, None, None, None)),  # accepted all the same: never resend
    (502, b"<html>Bad Gateway</html>", (Outcome.TRANSIENT, "http-502", None, None)),
    (408, b"", (Outcome.TRANSIENT, "http-408", None, None)),
    (404, b"", (Outcome.PERMANENT, "http-404", FailureScope.CHANNEL, None)),
    (302, b"", (Outcome.PERMANENT, "http-302", FailureScope.CHANNEL, None)),
    (409, b'{"error": {"code": "duplicate_reference"}}', (Outcome.PERMANENT, "duplicate_reference",
                                                         FailureScope.MESSAGE, None)),
    (400, b'{"error": {"code": "bad\\ncode"}}', (Outcome.PERMANENT, "http-400", FailureScope.MESSAGE, None)),
])
def test_classify_answer(status: int, body: bytes, expected: tuple[Any, ...]) -> None:
    result = classify_answer(status, body, None, now=NOW)

    outcome, code, scope, provider_id = expected
    assert (result.outcome, result.code, result.provider_message_id) == (outcome, code, provider_id)
    if scope is not None:
        assert result.scope is scope


def test_the_billed_cost_is_read_only_when_it_is_a_usable_amount() -> None:
    costs = [classify_answer(202, body, None, now=NOW).cost
             for body in (b'{"id": "a", "cost": 0.5}', b'{"id": "a", "cost": -1}', b'{"id": "a", "cost": "0.5"}',
                          b'{"id": "a", "cost": true}', b'{"id": "a"}')]
    assert costs == [0.5, None, None, None, None]


@pytest.mark.parametrize(("header", "seconds"), [
    ("30", 30.0), (" 2 ", 2.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0),
    (formatdate(NOW + 45, usegmt=True), 45.0), (formatdate(NOW - 45, usegmt=True), 0.0),
    ("99999999", MAX_RETRY_AFTER_SECONDS), (None, None), ("", None), ("soon", None), ("inf", None), ("nan", None),
])
def test_retry_after_reads_delta_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("api_overrides", "section", "path", "reason"), [
    ({"base_url": None}, {}, "api_config.base_url", "missing"),
    ({"base_url": "ftp://sms.example.net"}, {}, "api_config.base_url", "expected an http(s) URL"),
    ({"base_url": "http://sms.example.net"}, {}, "api_config.base_url", "must be https"),
    ({"base_url": "https://sms.example.net/?key=1"}, {}, "api_config.base_url", "without query"),
    ({"token": None}, {}, "api_config.token", "missing"),
    ({"token": "has space"}, {}, "api_config.token", "without spaces"),
    ({"token": 42}, {}, "api_config.token", "non-empty string"),
    ({"from": None}, {}, "api_config.from", "missing"),
    ({"from": "Acme Corporation Ltd"}, {}, "api_config.from", "alphanumeric sender id"),
    ({"timeout_seconds": 0}, {}, "api_config.timeout_seconds", "between 0.01 and 60"),
    ({"timeout_seconds": "10"}, {}, "api_config.timeout_seconds", "number of seconds"),
    ({"max_length": 0}, {}, "api_config.max_length", "from 1 to 100000"),
    ({"retries": 3}, {}, "api_config.retries", "unknown key"),
    ({}, {"kind": "email"}, "kind", "sends SMS"),
    ({}, {"outbox": "x.jsonl"}, "outbox", "unknown key"),
])
def test_config_mistakes_name_the_key(gateway: FakeSmsGateway, api_overrides: dict[str, Any],
                                      section: dict[str, Any], path: str, reason: str) -> None:
    secret = "s3cret_" + "ab" * 10
    api = api_config(gateway, **{"token": secret, **api_overrides})

    with pytest.raises(ConfigError) as exc:
        create_http_sms_channel(channel_spec(api, **section))

    assert exc.value.path == f"channels.SMS.{path}"
    assert reason in exc.value.reason
    assert secret not in str(exc.value)


def test_the_common_channel_keys_are_accepted_beside_the_plugins_own(gateway: FakeSmsGateway) -> None:
    section = {"kind": "sms", "enabled": True, "weight": 2, "rate_limit": {"per_second": 5, "burst": 5},
               "daily_budget": 10}
    channel = create_http_sms_channel(channel_spec(api_config(gateway, max_length=918), cost=0.04, **section))
    try:
        assert (channel.kind, channel.settings.max_length, channel.settings.cost) == ("sms", 918, 0.04)
    finally:
        channel.close()
