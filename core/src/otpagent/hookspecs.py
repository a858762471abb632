"""The otpagent extension points. A plugin implements any of these with ``@hookimpl``.

Each hook is called once per plugin at start-up, through pluggy, with a ``register`` callable;
the plugin calls it for each thing it provides. Built-ins are registered through exactly these
hooks, so a third-party plugin can do everything a built-in can. A hook implementation that
raises marks its plugin as failed: nothing it registered is used, and ``otpagent plugins``
says why. A name registered by two plugins is an error naming both. The ``register`` and
factory types are in :mod:`otpagent.registration`; docs/plugins.md has a worked example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from otpagent.registration import (
        RegisterChannel,
        RegisterEventSink,
        RegisterHttpRoute,
        RegisterRoutingStrategy,
        RegisterStorageBackend,
    )

hookspec = pluggy.HookspecMarker("otpagent")
hookimpl = pluggy.HookimplMarker("otpagent")

__all__ = ["hookimpl", "hookspec"]


@hookspec
def otpagent_register_channels(register: RegisterChannel) -> None:
    """Register delivery channels: ``register("twilio-sms", factory)``.

    ``factory(spec: ChannelSpec) -> Channel`` receives the channel's validated config section.
    It should check its own keys and raise ``ConfigError(path, reason)`` naming the key. What it
    returns is checked against the ``Channel`` protocol when the agent is built.
    """


@hookspec
def otpagent_register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register routing strategies: ``register("adaptive", factory)``.

    ``factory(settings: Mapping, context: PluginContext) -> RoutingStrategy``; ``settings`` is
    the ``routing`` config section.
    """


@hookspec
def otpagent_register_storage_backends(register: RegisterStorageBackend) -> None:
    """Register storage backends: ``register("sqlite", factory)``.

    ``factory(settings: Mapping, context: PluginContext) -> StorageBackend``; ``settings`` is
    the ``storage`` config section (raise ``ConfigError("storage.<key>", reason)`` for a bad
    one). The backend implements the required core and declares in ``capabilities`` the optional
    protocols it also implements (``otpagent.protocols.capabilities``); the agent checks those
    its configuration needs when it is built. It must pass the storage contract suite,
    installed with the core: subclass ``otpagent.testing.StorageContract`` (docs/storage.md).
    """


@hookspec
def otpagent_register_event_sinks(register: RegisterEventSink) -> None:
    """Register event sinks: ``register("webhook", factory)``.

    ``factory(settings: Mapping, context: PluginContext) -> EventSink``; ``settings`` is the
    sink's entry of the ``sinks`` list.
    """


@hookspec
def otpagent_register_http_routes(register: RegisterHttpRoute) -> None:
    """Register HTTP endpoints of the service: ``register(path, endpoint, methods=("POST",))``.

    ``endpoint(request, host)`` is an async callable taking a Starlette ``Request`` and the
    running agent's :class:`~otpagent.protocols.CallbackHost` (its channels, the attempts a
    provider knows, its clock, and ``record_provider_event``), returning a Starlette
    ``Response``. Provider callbacks (Twilio status, SendGrid events) are mounted this way. The same method and path
    registered by two plugins is a clash, like a name registered twice.
    """


@hookspec
def otpagent_register_commands(cli: click.Group) -> None:
    """Add commands to the ``otpagent`` command line: ``cli`` is the root ``click.Group``.

    Called once per plugin when the command line starts; a plugin that raises here is reported
    like one that fails to import, and the other commands keep working.
    """
