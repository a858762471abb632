"""Registers the ``console`` channel with otpagent (entry point ``otpagent.console``)."""

from __future__ import annotations

from typing import Any

from otpagent.hookspecs import hookimpl
from otpagent_console.channel import create_console_channel


@hookimpl
def otpagent_register_channels(register: Any) -> None:
    register("console", create_console_channel)
