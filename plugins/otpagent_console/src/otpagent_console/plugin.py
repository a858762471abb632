"""Registers the ``console`` channel with otpagent (entry point ``otpagent.console``)."""

from __future__ import annotations

from otpagent.hookspecs import hookimpl
from otpagent.registration import RegisterChannel
from otpagent_console.channel import create_console_channel


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("console", create_console_channel)
