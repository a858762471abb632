"""The verify endpoint puts the abuse budget on the caller (API key, client address) and on the
fleet's failure rate, never on the recipient: no stranger can lock a number's owner out.

Client addresses are set with ``X-Forwarded-For``, which uvicorn believes from 127.0.0.1 (the
default ``server.trusted_proxies``), as a reverse proxy in front of the service would send it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FakeClock, Outbox
from tests.service.conftest import OTHER_KEY, LiveServer, service_config

OWNER = "+447700900150"
STRANGER_IP = {"X-Forwarded-For": "203.0.113.7"}
OWNER_IP = {"X-Forwarded-For": "198.51.100.20"}


@pytest.fixture
def serve(make_server: Callable[..., LiveServer], tmp_path: Path) -> Callable[..., LiveServer]:
    """Serve an agent on ``service_config`` with these limits and ``otp`` keys."""

    def make(*, limits: dict[str, Any] | None = None, otp: dict[str, Any] | None = None,
             clock: FakeClock | None = None) -> LiveServer:
        config = service_config(tmp_path, **({"limits": limits} if limits is not None else {}))
        config["otp"] = {**config["otp"], **(otp or {})}
        return make_server(config, **({"clock": clock} if clock is not None else {}))

    return make


def verify(api: httpx.Client, code: str, headers: dict[str, str], recipient: str = OWNER) -> httpx.Response:
    return api.post("/v1/otp/verify", json={"recipient": recipient, "code": code}, headers=headers)


def send(api: httpx.Client, outbox: Outbox, recipient: str = OWNER) -> str:
    sent = api.post("/v1/otp", json={"phone_number": recipient})
    assert sent.status_code == 202, sent.text
    return outbox.code_for(sent.json()["message_id"])


def test_a_strangers_100_wrong_guesses_do_not_stop_the_owner_verifying_the_code_sent_next(serve, outbox) -> None:
    """The finding: a verify limit per recipient (and the core's lockout) let anyone who could
    call verify lock a number out, again and again."""
    live = serve()  # the default limits
    with live.client(OTHER_KEY) as stranger, live.client() as app:
        answers = [verify(stranger, f"{i:06d}", STRANGER_IP) for i in range(100)]
        code = send(app, outbox)
        owner = verify(app, code, OWNER_IP)

    statuses = [a.status_code for a in answers]
    assert statuses[:10] == [200] * 10 and {a.json()["reason"] for a in answers[:10]} == {"invalid"}
    assert set(statuses[10:]) == {429}, "the stranger's own budget ran out (30/min, burst 10 per address)"
    assert "failed OTP verifications per ip" in answers[10].json()["detail"]
    assert owner.status_code == 200 and owner.json() == {"verified": True, "reason": "verified"}


def test_a_refused_guess_is_not_evaluated(serve, outbox) -> None:
    clock = FakeClock()
    live = serve(limits={"otp_verify_failures_per_ip": {"per_minute": 1, "burst": 1}},
                 otp={"max_attempts": 3}, clock=clock)
    with live.client() as api:
        code = send(api, outbox)
        wrong = "000000" if code != "000000" else "111111"
        first = verify(api, wrong, OWNER_IP)
        refused = [verify(api, wrong, OWNER_IP), verify(api, code, OWNER_IP)]
        clock.advance(60)
        second = verify(api, wrong, OWNER_IP)
        clock.advance(60)
        right = verify(api, code, OWNER_IP)

    assert first.json()["reason"] == "invalid"
    assert [r.status_code for r in refused] == [429, 429]
    assert 1 <= int(refused[0].headers["retry-after"]) <= 60
    assert second.json()["reason"] == "invalid", "the refused guesses used none of the code's 3 attempts"
    assert right.json() == {"verified": True, "reason": "verified"}


def test_the_failure_budget_is_per_api_key(serve) -> None:
    live = serve(limits={"otp_verify_failures_per_key": {"per_minute": 1, "burst": 2},
                         "otp_verify_failures_per_ip": None})
    with live.client() as mine, live.client(OTHER_KEY) as theirs:
        spent = [verify(mine, "000000", {}).status_code for _ in range(3)]
        other = verify(theirs, "000000", {})

    assert spent == [200, 200, 429]
    assert other.status_code == 200


def test_right_codes_spend_no_failure_budget(serve, outbox) -> None:
    live = serve(limits={"otp_verify_failures_per_ip": {"per_minute": 1, "burst": 1}})
    recipients = [f"+4477009001{i:02d}" for i in range(3)]
    with live.client() as api:
        codes = [send(api, outbox, r) for r in recipients]
        answers = [verify(api, c, OWNER_IP, recipient=r) for r, c in zip(recipients, codes, strict=True)]

    assert [a.json()["verified"] for a in answers] == [True] * 3


def test_the_fleets_failure_rate_refuses_every_caller_before_comparing(serve, outbox) -> None:
    live = serve(limits={"otp_verify_failures_per_ip": None, "otp_verify_failures_per_key": None},
                 otp={"global_failures_per_minute": 1})
    with live.client() as app, live.client(OTHER_KEY) as stranger:
        code = send(app, outbox)
        wrong = "000000" if code != "000000" else "111111"
        spent = verify(stranger, wrong, STRANGER_IP)
        everyone = verify(app, code, OWNER_IP)

    assert spent.json()["reason"] == "invalid"
    assert everyone.status_code == 429
    assert int(everyone.headers["retry-after"]) >= 1
    assert "failed OTP verifications across all callers" in everyone.json()["detail"]
