"""Config validation: every mistake stops start-up with the key path that is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from otpagent.errors import ConfigError
from otpagent_twilio.channels import create_sms_channel, create_voice_channel, create_whatsapp_channel
from tests.twilio.conftest import channel_spec
from tests.twilio.fake_twilio import ACCOUNT_SID, API_KEY, AUTH_TOKEN

GOOD = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": "+15005550006"}


def _sms(api: dict[str, Any], **section: Any) -> None:
    create_sms_channel(channel_spec("sms", api, **section)).close()


@pytest.mark.parametrize(("api", "path", "words"), [
    ({**GOOD, "account_sid": None}, "channels.SMS.api_config.account_sid", "missing"),
    ({**GOOD, "account_sid": API_KEY}, "channels.SMS.api_config.account_sid", "AC + 32 hex"),
    ({**GOOD, "auth_token": None}, "channels.SMS.api_config.auth_token", "missing"),
    ({**GOOD, "auth_token": None, "api_key": API_KEY}, "channels.SMS.api_config.api_secret", "go together"),
    ({**GOOD, "api_key": ACCOUNT_SID, "api_secret": "s"}, "channels.SMS.api_config.api_key", "SK + 32 hex"),
    ({**GOOD, "from": None}, "channels.SMS.api_config.from", "messaging_service_sid"),
    ({**GOOD, "from": "07700 900123"}, "channels.SMS.api_config.from", "E.164"),
    ({**GOOD, "messaging_service_sid": "MG123"}, "channels.SMS.api_config.messaging_service_sid", "MG + 32"),
    ({**GOOD, "base_url": "api.twilio.com"}, "channels.SMS.api_config.base_url", "http(s) URL"),
    ({**GOOD, "timeout_seconds": 0}, "channels.SMS.api_config.timeout_seconds", "between"),
    ({**GOOD, "timeout_seconds": "10"}, "channels.SMS.api_config.timeout_seconds", "number"),
    ({**GOOD, "status_callback": "yes"}, "channels.SMS.api_config.status_callback", "true or false"),
    ({**GOOD, "acount_sid": "x"}, "channels.SMS.api_config.acount_sid", "unknown key"),
    ({**GOOD, "voice": "alice"}, "channels.SMS.api_config.voice", "unknown key"),
])
def test_sms_config_errors_name_the_key(api: dict[str, Any], path: str, words: str) -> None:
    api = {k: v for k, v in api.items() if v is not None}

    with pytest.raises(ConfigError) as caught:
        _sms(api)

    assert caught.value.path == path
    assert words in caught.value.reason


def test_config_errors_never_echo_a_misplaced_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        _sms({**GOOD, "account_sid": AUTH_TOKEN})

    assert AUTH_TOKEN not in str(caught.value)


@pytest.mark.parametrize(("section", "path"), [
    ({"country_costs": {"gb": 0.04}}, "channels.SMS.country_costs.gb"),
    ({"country_costs": {"GB": -1}}, "channels.SMS.country_costs.GB"),
    ({"country_costs": [0.04]}, "channels.SMS.country_costs"),
    ({"kind": "voice"}, "channels.SMS.kind"),
    ({"templates": {}}, "channels.SMS.templates"),
])
def test_section_level_errors_name_the_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _sms(GOOD, **section)

    assert caught.value.path == path


def test_sms_accepts_short_codes_and_alphanumeric_sender_ids() -> None:
    _sms({**GOOD, "from": "12345"})
    _sms({**GOOD, "from": "Example"})


def test_voice_needs_a_from_number_and_sane_repeat_counts() -> None:
    voice = {k: v for k, v in GOOD.items() if k != "from"}
    with pytest.raises(ConfigError) as caught:
        create_voice_channel(channel_spec("voice", voice))
    assert caught.value.path == "channels.VOICE.api_config.from"

    with pytest.raises(ConfigError) as caught:
        create_voice_channel(channel_spec("voice", {**GOOD, "repeat": 9}))
    assert caught.value.path == "channels.VOICE.api_config.repeat"

    with pytest.raises(ConfigError) as caught:
        create_voice_channel(channel_spec("voice", {**GOOD, "from": "Example"}))
    assert caught.value.path == "channels.VOICE.api_config.from"


@pytest.mark.parametrize(("api", "path"), [
    ({**GOOD, "content_sid": "HX1"}, "channels.WHATSAPP.api_config.content_sid"),
    ({**GOOD, "content_variables": {"1": "{code}"}}, "channels.WHATSAPP.api_config.content_variables"),
    ({**GOOD, "content_sid": "HX" + "0" * 32, "content_variables": {"1": 5}},
     "channels.WHATSAPP.api_config.content_variables.1"),
    ({**GOOD, "templates": {"promo": {"content_sid": "HX" + "0" * 32}}},
     "channels.WHATSAPP.api_config.templates.promo"),
    ({**GOOD, "templates": {"alert": {"sid": "HX" + "0" * 32}}}, "channels.WHATSAPP.api_config.templates.alert.sid"),
    ({**GOOD, "templates": {"alert": {}}}, "channels.WHATSAPP.api_config.templates.alert.content_sid"),
    ({**GOOD, "from": "whatsapp:Example"}, "channels.WHATSAPP.api_config.from"),
])
def test_whatsapp_template_config_errors_name_the_key(api: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_whatsapp_channel(channel_spec("whatsapp", api))

    assert caught.value.path == path


def test_whatsapp_sender_is_stored_without_its_prefix() -> None:
    channel = create_whatsapp_channel(channel_spec("whatsapp", {**GOOD, "from": "whatsapp:+15005550006"}))

    assert channel.settings.sender == "+15005550006"
    channel.close()


def test_the_documented_example_configuration_builds_all_three_channels(fake, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json
    import re
    from pathlib import Path

    from otpagent import IntelligentOTPAgent

    doc = (Path(__file__).parents[2] / "docs/channels/twilio.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))  # type: ignore[union-attr]
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    example["storage"] = {"path": str(tmp_path / "doc.db")}
    example["sinks"] = []
    example["otp"] = {**example.get("otp", {}), "key_file": str(tmp_path / "otpagent.key")}

    with IntelligentOTPAgent(example) as agent:
        kinds = {name: channel.kind for name, channel in agent.channels.items()}

    assert kinds == {"SMS": "sms", "WHATSAPP": "whatsapp", "CALL": "voice"}


def test_callbacks_at_a_base_url_of_the_channels_own_need_a_store_that_applies_provider_events() -> None:
    import attrs

    from otpagent.protocols import Capability
    from otpagent.testing import InMemoryStorage

    class NoProviderEvents(InMemoryStorage):
        name = "acme"
        capabilities = InMemoryStorage.capabilities - {Capability.PROVIDER_EVENTS}

    api = {**GOOD, "callback_base_url": "https://callbacks.example"}
    spec = channel_spec("sms", api, public_url=None)
    spec = attrs.evolve(spec, context=attrs.evolve(spec.context, storage=NoProviderEvents()))

    with pytest.raises(ConfigError) as caught:
        create_sms_channel(spec)
    quiet = {**api, "status_callback": False}  # no callbacks asked for: no need
    create_sms_channel(attrs.evolve(spec, api_config=quiet, settings={**spec.settings, "api_config": quiet})).close()

    assert caught.value.path == "channels.SMS.api_config.callback_base_url"
    assert "'acme' does not provide the provider events capability" in caught.value.reason
