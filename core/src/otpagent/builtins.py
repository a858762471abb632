"""The built-in plugin: registers the core's own storage, routing, sink and commands through the hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otpagent.hookspecs import hookimpl
from otpagent.registration import RegisterEventSink, RegisterRoutingStrategy, RegisterStorageBackend
from otpagent.routing.adaptive import create_adaptive_strategy
from otpagent.routing.priority import create_priority_strategy
from otpagent.routing.simple import create_cheapest, create_most_reliable
from otpagent.sinks.log import create_log_sink
from otpagent.storage.sqlite import create_sqlite_storage
from otpagent.testing.memory import create_memory_storage

if TYPE_CHECKING:
    import click


@hookimpl
def otpagent_register_storage_backends(register: RegisterStorageBackend) -> None:
    register("sqlite", create_sqlite_storage)
    register("memory", create_memory_storage)


@hookimpl
def otpagent_register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    register("priority", create_priority_strategy)
    register("cheapest", create_cheapest)
    register("most-reliable", create_most_reliable)
    register("adaptive", create_adaptive_strategy)


@hookimpl
def otpagent_register_event_sinks(register: RegisterEventSink) -> None:
    register("log", create_log_sink)


@hookimpl
def otpagent_register_commands(cli: click.Group) -> None:
    from otpagent.otp_key_command import add_otp_key_commands

    add_otp_key_commands(cli)  # ``otpagent otp reset-key``
