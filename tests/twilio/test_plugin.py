"""The installed package registers itself through the ``otpagent`` entry point."""

from __future__ import annotations

from pathlib import Path

from otpagent.plugins import build_registry, describe_plugins
from tests.twilio.conftest import agent_config, api_config


def test_the_entry_point_registers_three_channels_and_the_callback_route() -> None:
    registry = build_registry()

    for name in ("twilio-sms", "twilio-whatsapp", "twilio-voice"):
        assert registry.channels[name].plugin == "twilio"
    [route] = [r for r in registry.http_routes if r.plugin == "twilio"]
    assert (route.path, route.methods) == ("/callbacks/twilio/{channel}", ("POST",))
    [row] = [r for r in describe_plugins() if r["name"] == "twilio"]
    assert row["package"] == "otpagent-twilio"


def test_original_config_shape_sms_section_without_plugin_uses_twilio(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from otpagent import IntelligentOTPAgent

    twilio = {"SMS": {"api_config": api_config(fake)}, "WHATSAPP": {"api_config": api_config(fake)},
              "CALL": {"api_config": api_config(fake)}}
    with IntelligentOTPAgent(agent_config(tmp_path, fake, twilio=twilio)) as agent:
        assert {name: agent.channels[name].kind for name in ("SMS", "WHATSAPP", "CALL")} == {
            "SMS": "sms", "WHATSAPP": "whatsapp", "CALL": "voice"}
