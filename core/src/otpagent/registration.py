"""The types of what a plugin registers: factories and the ``register`` callables of each hook.

A hook implementation receives one of the ``Register*`` callables and calls it once per thing it
provides; each takes a name and a factory of the matching type. Annotating a hook implementation
with these lets mypy check a plugin's factories against the protocols before anything runs::

    from otpagent.hookspecs import hookimpl
    from otpagent.registration import RegisterChannel

    @hookimpl
    def otpagent_register_channels(register: RegisterChannel) -> None:
        register("acme-sms", create_acme_sms)   # create_acme_sms(spec: ChannelSpec) -> AcmeSms

The agent checks each factory's result against its protocol again when it builds the plugin
(:mod:`otpagent.plugin_checks`), because a plugin need not be type-checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from otpagent.protocols import (
    CallbackHost,
    Channel,
    ChannelSpec,
    EventSink,
    PluginContext,
    RoutingStrategy,
    StorageBackend,
)

if TYPE_CHECKING:  # the web stack loads only when the service runs
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "ChannelFactory",
    "HttpEndpoint",
    "PluginKind",
    "RegisterChannel",
    "RegisterEventSink",
    "RegisterHttpRoute",
    "RegisterRoutingStrategy",
    "RegisterStorageBackend",
    "SinkFactory",
    "StorageFactory",
    "StrategyFactory",
]

#: The extension points that are built from config by name, as ``Registry`` tables name them.
PluginKind: TypeAlias = Literal["channels", "routing_strategies", "storage_backends", "event_sinks"]

#: Builds a channel from its validated config section (``channels.<NAME>``).
ChannelFactory: TypeAlias = Callable[[ChannelSpec], Channel]
#: Builds the routing strategy from the ``routing`` section.
StrategyFactory: TypeAlias = Callable[[Mapping[str, Any], PluginContext], RoutingStrategy]
#: Builds the storage backend from the ``storage`` section (``context.storage`` is None).
StorageFactory: TypeAlias = Callable[[Mapping[str, Any], PluginContext], StorageBackend]
#: Builds an event sink from its entry of the ``sinks`` list.
SinkFactory: TypeAlias = Callable[[Mapping[str, Any], PluginContext], EventSink]
#: ``async endpoint(request, host) -> Response`` mounted by ``otpagent serve``; ``host`` is the
#: :class:`~otpagent.protocols.CallbackHost` of the running agent.
HttpEndpoint: TypeAlias = "Callable[[Request, CallbackHost], Awaitable[Response]]"


class RegisterChannel(Protocol):
    """``register(name, factory)`` as passed to ``otpagent_register_channels``."""

    def __call__(self, name: str, factory: ChannelFactory) -> None: ...


class RegisterRoutingStrategy(Protocol):
    """``register(name, factory)`` as passed to ``otpagent_register_routing_strategies``."""

    def __call__(self, name: str, factory: StrategyFactory) -> None: ...


class RegisterStorageBackend(Protocol):
    """``register(name, factory)`` as passed to ``otpagent_register_storage_backends``."""

    def __call__(self, name: str, factory: StorageFactory) -> None: ...


class RegisterEventSink(Protocol):
    """``register(name, factory)`` as passed to ``otpagent_register_event_sinks``."""

    def __call__(self, name: str, factory: SinkFactory) -> None: ...


class RegisterHttpRoute(Protocol):
    """``register(path, endpoint, methods=("POST",))`` as passed to ``otpagent_register_http_routes``."""

    def __call__(self, path: str, endpoint: HttpEndpoint, methods: Iterable[str] = ("POST",)) -> None: ...
