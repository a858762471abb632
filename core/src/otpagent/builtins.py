"""The built-in plugin: registers the core's own storage, routing, sink and commands through the hooks.

Each factory is imported when a config first uses it (:mod:`otpagent.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otpagent.hookspecs import hookimpl
from otpagent.lazy import lazy
from otpagent.registration import RegisterEventSink, RegisterRoutingStrategy, RegisterStorageBackend

if TYPE_CHECKING:
    import click


@hookimpl
def otpagent_register_storage_backends(register: RegisterStorageBackend) -> None:
    register("sqlite", lazy("otpagent.storage.sqlite:create_sqlite_storage"))
    register("memory", lazy("otpagent.testing.memory:create_memory_storage"))


@hookimpl
def otpagent_register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    register("priority", lazy("otpagent.routing.priority:create_priority_strategy"))
    register("cheapest", lazy("otpagent.routing.simple:create_cheapest"))
    register("most-reliable", lazy("otpagent.routing.simple:create_most_reliable"))
    register("adaptive", lazy("otpagent.routing.adaptive:create_adaptive_strategy"))


@hookimpl
def otpagent_register_event_sinks(register: RegisterEventSink) -> None:
    register("log", lazy("otpagent.sinks.log:create_log_sink"))


@hookimpl
def otpagent_register_commands(cli: click.Group) -> None:
    from otpagent.otp_key_command import add_otp_key_commands

    add_otp_key_commands(cli)  # ``otpagent otp reset-key``
