"""The ``server`` config section: errors name the key, and the service refuses to run keyless."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otpagent import IntelligentOTPAgent
from otpagent.errors import ConfigError
from otpagent.server import create_app, parse_server_settings
from tests.service.conftest import service_config


@pytest.mark.parametrize(("section", "path"), [
    ({"api_keys": ["short"]}, "server.api_keys[0]"),
    ({"api_keys": ["sha256:nothex"]}, "server.api_keys[0]"),
    ({"api_keys": "k" * 20, "public_metrics": "yes"}, "server.public_metrics"),
    ({"limits": {"otp_send_per_planet": {"per_minute": 1}}}, "server.limits.otp_send_per_planet"),
    ({"limits": {"otp_send_per_ip": {"per_minute": 0}}}, "server.limits.otp_send_per_ip.per_minute"),
    ({"max_body_bytes": 10}, "server.max_body_bytes"),
    ({"port": 70000}, "server.port"),
    ({"cors": True}, "server.cors"),
    ({"processes": 0}, "server.processes"),
    ({"processes": "4"}, "server.processes"),
    ({"limits": {"otp_verify_per_recipient": {"per_minute": 10}}}, "server.limits.otp_verify_per_recipient"),
    ({"limits": {"otp_verify_failures_per_ip": {"per_minute": 1, "burst": 0}}},
     "server.limits.otp_verify_failures_per_ip.burst"),
])
def test_bad_server_settings_name_the_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_server_settings(section)

    assert info.value.path == path


def test_the_service_will_not_run_without_an_api_key(tmp_path: Path) -> None:
    config = service_config(tmp_path)
    config["server"] = {}

    with IntelligentOTPAgent(config) as agent, pytest.raises(ConfigError) as info:
        create_app(agent)

    assert info.value.path == "server.api_keys"


def test_limits_can_be_switched_off_one_by_one() -> None:
    settings = parse_server_settings({"api_keys": ["k" * 20], "limits": {"otp_verify_per_ip": None}})

    assert settings.limits["otp_verify_per_ip"] is None
    assert settings.limits["otp_send_per_ip"] is not None
