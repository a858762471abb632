"""Built-in plugin: the ``serve`` and ``webhooks`` commands and the ``webhook`` event sink.

Imported at start-up by the plugin manager, so it imports nothing heavy: the commands and the
sink load their modules when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otpagent.hookspecs import hookimpl
from otpagent.protocols import EventSink, PluginContext
from otpagent.registration import RegisterEventSink

if TYPE_CHECKING:
    import click


def _create_webhook_sink(settings: Mapping[str, Any], context: PluginContext) -> EventSink:
    from otpagent.errors import ConfigError
    from otpagent.extras import MissingExtra, require

    try:
        require("webhooks", "the webhook sink")
    except MissingExtra as exc:
        raise ConfigError("sinks[].plugin", str(exc)) from None
    from otpagent.sinks.webhook import create_webhook_sink

    return create_webhook_sink(settings, context)


@hookimpl
def otpagent_register_event_sinks(register: RegisterEventSink) -> None:
    register("webhook", _create_webhook_sink)


@hookimpl
def otpagent_register_commands(cli: click.Group) -> None:
    from otpagent.server.commands import serve, webhooks

    cli.add_command(serve)
    cli.add_command(webhooks)
