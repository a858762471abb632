"""Registers the Twilio channels and the status-callback route (entry point ``otpagent.twilio``).

Loaded at every otpagent start-up, so it imports nothing heavy: each factory and the callback
endpoint import the Twilio SDK and Starlette when first used.
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

#: Where Twilio posts status callbacks (``{channel}``: the channel's name in config.json).
CALLBACK_ROUTE = "/callbacks/twilio/{channel}"


@describes("otpagent_twilio.settings:TwilioSmsSection")
def create_sms_channel(spec: ChannelSpec) -> Channel:
    from otpagent_twilio.channels import create_sms_channel

    return create_sms_channel(spec)


@describes("otpagent_twilio.settings:TwilioWhatsAppSection")
def create_whatsapp_channel(spec: ChannelSpec) -> Channel:
    from otpagent_twilio.channels import create_whatsapp_channel

    return create_whatsapp_channel(spec)


@describes("otpagent_twilio.settings:TwilioVoiceSection")
def create_voice_channel(spec: ChannelSpec) -> Channel:
    from otpagent_twilio.channels import create_voice_channel

    return create_voice_channel(spec)


async def twilio_status_callback(request: Request, host: CallbackHost) -> Response:
    from otpagent_twilio.callbacks import twilio_status_callback

    return await twilio_status_callback(request, host)


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("twilio-sms", create_sms_channel)
    register("twilio-whatsapp", create_whatsapp_channel)
    register("twilio-voice", create_voice_channel)


@hookimpl
def otpagent_register_http_routes(register: RegisterHttpRoute) -> None:
    register(CALLBACK_ROUTE, twilio_status_callback, methods=("POST",))
