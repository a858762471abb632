"""A held prefix over HTTP: ``POST /v1/otp`` answers 403 ``otp-held`` naming the prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import FakeClock
from tests.fraud.test_agent_fraud import OTP, pump
from tests.service.conftest import service_config


def test_the_service_answers_403_with_the_prefix_for_a_held_prefix(make_server: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    clock = FakeClock()
    config = service_config(tmp_path)
    config["otp"] = {**config["otp"], **OTP}
    live = make_server(config, run_workers=False, clock=clock)
    pump(live.agent, clock)
    with live.client() as api:
        response = api.post("/v1/otp", json={"phone_number": "+447700900555"})
    assert response.status_code == 403
    problem = response.json()
    assert problem["type"] == "urn:otpagent:problem:otp-held"
    assert problem["errors"][0]["field"] == "phone_number" and "+447700" in problem["errors"][0]["reason"]
    assert 3500 <= int(response.headers["retry-after"]) <= 3600
