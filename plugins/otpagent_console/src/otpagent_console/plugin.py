"""Registers the ``console`` channel with otpagent (entry point ``otpagent.console``).

Loaded at every otpagent start-up, so the channel module is imported only when a config uses it.
"""

from __future__ import annotations

from otpagent.hookspecs import hookimpl
from otpagent.lazy import lazy
from otpagent.registration import RegisterChannel


@hookimpl
def otpagent_register_channels(register: RegisterChannel) -> None:
    register("console", lazy("otpagent_console.channel:create_console_channel"))
