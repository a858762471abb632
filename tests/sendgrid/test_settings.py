"""Configuration of a sendgrid-email channel: defaults, and errors that name the key path."""

from __future__ import annotations

import copy
from typing import Any

import importlib_metadata
import pytest

from otpagent.errors import ConfigError
from otpagent.model import MessageType
from otpagent_sendgrid.channel import create_sendgrid_channel
from otpagent_sendgrid.settings import DEFAULT_BASE_URL, parse_settings
from tests.sendgrid.conftest import channel_spec

MINIMAL = {"plugin": "sendgrid-email", "api_config": {"api_key": "SG.x", "from": "no-reply@example.com"}}


def _with(api_config: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    section = copy.deepcopy(MINIMAL)
    section["api_config"].update(api_config or {})
    section.update(top)
    return section


def _error(section: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        create_sendgrid_channel(channel_spec(section))
    return info.value


def test_a_minimal_section_gets_sendgrids_host_an_explicit_timeout_and_no_tracking():
    settings = parse_settings(channel_spec(MINIMAL))

    assert settings.base_url == DEFAULT_BASE_URL == "https://api.sendgrid.com"
    assert settings.timeout_seconds == 10.0
    assert settings.sandbox_mode is False
    assert settings.tracking == {"click": False, "open": False, "subscription": False}
    assert settings.types[MessageType.OTP].categories == ("otpagent", "otp")


def test_the_api_key_is_never_in_the_settings_repr():
    settings = parse_settings(channel_spec(_with({"api_key": "SG.very-secret"})))

    assert "SG.very-secret" not in repr(settings)


def test_sender_keys_may_also_sit_at_the_top_of_the_section():
    section = {"plugin": "sendgrid-email", "api_config": {"api_key": "SG.x"}, "from": "a@example.com",
               "reply_to": "b@example.com"}

    settings = parse_settings(channel_spec(section))

    assert (settings.from_email, settings.reply_to) == ("a@example.com", "b@example.com")


@pytest.mark.parametrize(("section", "path"), [
    ({"plugin": "sendgrid-email", "api_config": {"from": "a@example.com"}}, "channels.EMAIL.api_config.api_key"),
    ({"plugin": "sendgrid-email", "api_config": {"api_key": "SG.x"}}, "channels.EMAIL.api_config.from"),
    (_with({"from": "not-an-address"}), "channels.EMAIL.api_config.from"),
    (_with({"reply_to": "nope"}), "channels.EMAIL.api_config.reply_to"),
    (_with({"base_url": "api.sendgrid.com"}), "channels.EMAIL.api_config.base_url"),
    (_with({"timeout_seconds": 0}), "channels.EMAIL.api_config.timeout_seconds"),
    (_with({"timeout_seconds": "10"}), "channels.EMAIL.api_config.timeout_seconds"),
    (_with({"sandbox_mode": "yes"}), "channels.EMAIL.api_config.sandbox_mode"),
    (_with({"webhook_public_key": "bm90IGEga2V5"}), "channels.EMAIL.api_config.webhook_public_key"),
    (_with({"account_sid": "AC1"}), "channels.EMAIL.api_config.account_sid"),
    (_with(colour="blue"), "channels.EMAIL.colour"),
    (_with(tracking={"pixel": True}), "channels.EMAIL.tracking.pixel"),
    (_with(templates={"otp": {"text": "Hello $name"}}), "channels.EMAIL.templates.otp.text"),
    (_with(templates={"otp": {"html": "<p>no code here</p>"}}), "channels.EMAIL.templates.otp.html"),
    (_with(templates={"otp": {"subject": "100$ off"}}), "channels.EMAIL.templates.otp.subject"),
    (_with(templates={"marketing": {"text": "$body"}}), "channels.EMAIL.templates.marketing"),
    (_with(templates={"alert": {"font": "serif"}}), "channels.EMAIL.templates.alert.font"),
    (_with(template_id=42), "channels.EMAIL.template_id"),
    (_with(categories=[f"c{i}" for i in range(11)]), "channels.EMAIL.categories"),
    (_with(categories={"otp": "login"}), "channels.EMAIL.categories.otp"),
    (_with(kind="sms"), "channels.EMAIL.kind"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_key_is_reported_with_its_path(section, path):
    error = _error(section)

    assert error.path == path


def test_a_key_given_in_both_places_is_an_error():
    error = _error(_with({"from": "a@example.com"}, **{"from": "b@example.com"}))

    assert error.path == "channels.EMAIL.from"
    assert "given twice" in error.reason


def test_a_single_template_id_applies_to_every_message_type():
    settings = parse_settings(channel_spec(_with(template_id="d-abc")))

    assert {t.template_id for t in settings.types.values()} == {"d-abc"}


def test_the_package_registers_its_plugin_through_the_otpagent_entry_point_group():
    [entry] = [ep for ep in importlib_metadata.entry_points(group="otpagent") if ep.name == "sendgrid"]

    module = entry.load()

    registered: dict[str, Any] = {}
    routes: list[tuple[str, tuple[str, ...]]] = []
    module.otpagent_register_channels(register=registered.__setitem__)
    module.otpagent_register_http_routes(
        register=lambda path, endpoint, methods=("POST",): routes.append((path, methods)))
    assert list(registered) == ["sendgrid-email"]
    assert registered["sendgrid-email"] is module.create_sendgrid_channel  # imports the SDK only when called
    assert routes == [("/callbacks/sendgrid/events", ("POST",))]


def test_an_event_webhook_key_needs_a_store_that_applies_provider_events(signer):
    import attrs

    from otpagent.protocols import Capability
    from otpagent.testing import InMemoryStorage

    class NoProviderEvents(InMemoryStorage):
        name = "acme"
        capabilities = InMemoryStorage.capabilities - {Capability.PROVIDER_EVENTS}

    spec = channel_spec(_with({"webhook_public_key": signer.public_key}))
    spec = attrs.evolve(spec, context=attrs.evolve(spec.context, storage=NoProviderEvents()))

    with pytest.raises(ConfigError) as caught:
        create_sendgrid_channel(spec)

    assert caught.value.path == "channels.EMAIL.api_config.webhook_public_key"
    assert "'acme' does not provide the provider events capability" in caught.value.reason
