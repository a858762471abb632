"""Registers the ``sendgrid-email`` channel and the Event Webhook route (entry point ``otpagent.sendgrid``).

Loaded at every otpagent start-up, so it imports nothing heavy: the factory and the webhook
endpoint import the SendGrid SDK and Starlette when first used.
"""

from __future__ import annotations

from typing import Any

from otpagent.hookspecs import hookimpl

#: Where SendGrid posts Event Webhook batches.
WEBHOOK_PATH = "/callbacks/sendgrid/events"


def create_sendgrid_channel(spec: Any) -> Any:
    from otpagent_sendgrid.channel import create_sendgrid_channel

    return create_sendgrid_channel(spec)


async def receive_events(request: Any, agent: Any) -> Any:
    from otpagent_sendgrid.webhook import receive_events

    return await receive_events(request, agent)


@hookimpl
def otpagent_register_channels(register: Any) -> None:
    register("sendgrid-email", create_sendgrid_channel)


@hookimpl
def otpagent_register_http_routes(register: Any) -> None:
    register(WEBHOOK_PATH, receive_events, methods=("POST",))
