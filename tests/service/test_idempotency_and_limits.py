"""Idempotency-Key semantics and the abuse limits on the OTP endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from otpagent import IntelligentOTPAgent
from otpagent.server import create_app, parse_server_settings
from tests.conftest import FakeClock
from tests.service.conftest import API_KEY, OTHER_KEY, LiveServer, service_config


def test_a_repeated_idempotency_key_returns_the_first_response(api: httpx.Client) -> None:
    body = {"email": "a@example.com", "content": "once"}
    headers = {"Idempotency-Key": "order-42"}

    first = api.post("/v1/messages", json=body, headers=headers)
    again = api.post("/v1/messages", json=body, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert api.get("/v1/metrics").json()["database_stats"]["total_messages"] == 1


def test_an_otp_send_repeated_with_its_idempotency_key_sends_one_code(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "login-attempt-1"}

    first = api.post("/v1/otp", json={"phone_number": "+447700900900"}, headers=headers)
    again = api.post("/v1/otp", json={"phone_number": "+447700900900"}, headers=headers)

    assert first.status_code == again.status_code == 202  # not the resend cooldown's 429
    assert first.json() == again.json()


def test_the_same_key_with_a_different_body_is_a_409(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-43"}
    api.post("/v1/messages", json={"email": "a@example.com", "content": "one"}, headers=headers)

    conflict = api.post("/v1/messages", json={"email": "a@example.com", "content": "two"}, headers=headers)

    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert conflict.json()["type"] == "urn:otpagent:problem:idempotency-conflict"


def test_a_refused_request_does_not_burn_its_key(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-44"}
    refused = api.post("/v1/messages", json={"email": "a@example.com"}, headers=headers)

    fixed = api.post("/v1/messages", json={"email": "a@example.com", "content": "fixed"}, headers=headers)

    assert refused.status_code == 422
    assert fixed.status_code == 202


def test_idempotency_keys_are_scoped_to_the_api_key(live: LiveServer) -> None:
    headers = {"Idempotency-Key": "shared-name"}
    with live.client() as mine, live.client(OTHER_KEY) as theirs:
        a = mine.post("/v1/messages", json={"email": "a@example.com", "content": "a"}, headers=headers)
        b = theirs.post("/v1/messages", json={"email": "b@example.com", "content": "b"}, headers=headers)

    assert a.status_code == b.status_code == 202
    assert a.json() != b.json()


def test_otp_sends_to_one_recipient_are_limited_with_retry_after(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(limits={"otp_send_per_recipient": {"per_minute": 1, "burst": 1}})
    with live.client() as api:
        first = api.post("/v1/otp", json={"email": "user@example.com"})
        other = api.post("/v1/otp", json={"email": "someone@example.com"})
        limited = api.post("/v1/otp", json={"email": "USER@example.com"})  # the same mailbox

    assert (first.status_code, other.status_code) == (202, 202)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"] == "application/problem+json"
    assert "per recipient" in limited.json()["detail"]


def test_the_core_resend_cooldown_is_a_429_too(api: httpx.Client) -> None:
    api.post("/v1/otp", json={"phone_number": "+447700900300"})

    again = api.post("/v1/otp", json={"phone_number": "+447700900300"})

    assert again.status_code == 429
    assert 1 <= int(again.headers["retry-after"]) <= 30


def test_otp_sends_are_limited_per_client_address(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(limits={"otp_send_per_ip": {"per_minute": 1, "burst": 2}})
    with live.client() as api:
        answers = [api.post("/v1/otp", json={"phone_number": f"+4477009002{i:02d}"}).status_code for i in range(3)]

    assert answers == [202, 202, 429]


def test_a_request_refused_by_one_limit_does_not_use_up_the_others(
        make_server: Callable[..., LiveServer]) -> None:
    live = make_server(limits={"otp_send_per_key": {"per_minute": 1, "burst": 2},
                               "otp_send_per_recipient": {"per_minute": 1, "burst": 1},
                               "otp_send_per_ip": None})
    with live.client() as api:
        first = api.post("/v1/otp", json={"email": "one@example.com"})
        refused = api.post("/v1/otp", json={"email": "one@example.com"})
        other = api.post("/v1/otp", json={"email": "two@example.com"})
        spent = api.post("/v1/otp", json={"email": "three@example.com"})

    assert (first.status_code, refused.status_code) == (202, 429)
    assert "per recipient" in refused.json()["detail"]
    assert other.status_code == 202, "the refused request took none of the key's two tokens"
    assert spent.status_code == 429 and "per key" in spent.json()["detail"]


def test_limits_apply_per_api_key(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(limits={"otp_verify_per_key": {"per_minute": 1, "burst": 1}, "otp_verify_per_ip": None})
    body = {"recipient": "a@example.com", "code": "1"}
    with live.client() as mine, live.client(OTHER_KEY) as theirs:
        first, second = mine.post("/v1/otp/verify", json=body), mine.post("/v1/otp/verify", json=body)
        other = theirs.post("/v1/otp/verify", json=body)

    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)


def test_idempotency_keys_older_than_a_day_are_new(tmp_path: Path) -> None:
    clock = FakeClock()
    agent = IntelligentOTPAgent(service_config(tmp_path), clock=clock)
    app = create_app(agent, parse_server_settings(agent.config.server, run_workers=False))
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "daily"}

    async def post(content: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post("/v1/messages", json={"email": "a@example.com", "content": content},
                                     headers=headers)

    try:
        first = asyncio.run(post("monday"))
        clock.advance(23 * 3600)
        conflict = asyncio.run(post("tuesday"))
        clock.advance(2 * 3600)
        fresh = asyncio.run(post("tuesday"))
    finally:
        agent.close()

    assert (first.status_code, conflict.status_code, fresh.status_code) == (202, 409, 202)
    assert fresh.json() != first.json()
