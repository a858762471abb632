"""Registers the ``sendgrid-email`` channel and the Event Webhook route (entry point ``otpagent.sendgrid``).

Loaded at every otpagent start-up, so it imports nothing heavy: the factory and the webhook
endpoint import the SendGrid SDK and Starlette when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otpagent.hookspecs import hookimpl
from otpagent.protocols import CallbackHost, Channel, ChannelSpec
from otpagent.registration import RegisterChannel, RegisterHttpRoute
from otpagent.settings import describes

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

#: Where SendGrid posts Event Webhook batches.
WEBHOOK_PATH = "/callbacks/sendgrid/events"


@describes("otpagent_sendgrid.settings:SendGridSection")
def create_sendgrid_channel(spec: ChannelSpec) -> Channel:
    from otpagent_sendgrid.channel import create_sendgrid_channel

    return create_sendgrid_channel(spec)


async def receive_events(request: Request, host: CallbackHost) -> Response:
    from otpagent_sendgrid.webhook import receive_events

    return await receive_events(request, host)


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("sendgrid-email", create_sendgrid_channel)


@hookimpl
def otpagent_register_http_routes(register: RegisterHttpRoute) -> None:
    register(WEBHOOK_PATH, receive_events, methods=("POST",))
