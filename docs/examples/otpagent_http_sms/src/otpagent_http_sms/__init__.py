"""otpagent-http-sms: an SMS channel for a generic HTTP gateway (``"plugin": "http-sms"``).

This module is the package's entry point (group ``otpagent``), imported at every otpagent
start-up, so it stays light: httpx loads when a channel is first built, not before (the
settings module needs only attrs; cattrs loads when a section is first checked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otpagent.hookspecs import hookimpl
from otpagent.protocols import ChannelSpec
from otpagent.registration import RegisterChannel
from otpagent.settings import describes
from otpagent_http_sms.settings import HttpSmsSection

if TYPE_CHECKING:
    from otpagent_http_sms.channel import HttpSmsChannel

__all__ = ["create_http_sms_channel"]


@describes(HttpSmsSection)  # `otpagent config schema` publishes the section's keys
def create_http_sms_channel(spec: ChannelSpec) -> HttpSmsChannel:
    """Factory for ``"plugin": "http-sms"`` sections: validate, then build the channel."""
    from otpagent_http_sms.channel import HttpSmsChannel
    from otpagent_http_sms.settings import parse_settings  # light too: attrs and otpagent.settings

    return HttpSmsChannel(parse_settings(spec), clock=spec.context.clock)


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("http-sms", create_http_sms_channel)
