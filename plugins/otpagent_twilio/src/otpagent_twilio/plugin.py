"""Registers the Twilio channels and the status-callback route (entry point ``otpagent.twilio``)."""

from __future__ import annotations

from otpagent.hookspecs import hookimpl
from otpagent.registration import RegisterChannel, RegisterHttpRoute
from otpagent_twilio.callbacks import twilio_status_callback
from otpagent_twilio.channels import (
    CALLBACK_ROUTE,
    create_sms_channel,
    create_voice_channel,
    create_whatsapp_channel,
)


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("twilio-sms", create_sms_channel)
    register("twilio-whatsapp", create_whatsapp_channel)
    register("twilio-voice", create_voice_channel)


@hookimpl
def otpagent_register_http_routes(register: RegisterHttpRoute) -> None:
    register(CALLBACK_ROUTE, twilio_status_callback, methods=("POST",))
