"""Registers the ``sendgrid-email`` channel and the Event Webhook route (entry point ``otpagent.sendgrid``)."""

from __future__ import annotations

from otpagent.hookspecs import hookimpl
from otpagent.registration import RegisterChannel, RegisterHttpRoute
from otpagent_sendgrid.channel import create_sendgrid_channel
from otpagent_sendgrid.webhook import WEBHOOK_PATH, receive_events


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("sendgrid-email", create_sendgrid_channel)


@hookimpl
def otpagent_register_http_routes(register: RegisterHttpRoute) -> None:
    register(WEBHOOK_PATH, receive_events, methods=("POST",))
