"""``create_app(agent, settings)``: the otpagent service as one Starlette application.

It mounts the REST API, the probes, ``/metrics``, the OpenAPI document and docs, the live
dashboard, and every route a plugin registered (provider callbacks carry their own signatures,
so they are not behind our API key). The lifespan starts the agent's workers (unless they run
in another process) and the event sinks' background pumps, and stops the workers on shutdown.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpagent.callback_host import AgentCallbackHost
from otpagent.errors import ConfigError, InvalidRequest, OtpHeld, RateLimited
from otpagent.logs import get_logger
from otpagent.protocols import CallbackHost, Capability
from otpagent.server.api import api_routes
from otpagent.server.batching import CallBatcher
from otpagent.server.dashboard import dashboard_routes
from otpagent.server.delivery import DeliveryLink, WithDelivery
from otpagent.server.explorer import explorer_routes
from otpagent.server.health import health_routes
from otpagent.server.openapi import openapi_document
from otpagent.server.problems import Problem, handle_exception, problem_response
from otpagent.server.prometheus import build_registry, prometheus_metrics
from otpagent.server.service import Service
from otpagent.server.settings import ServerSettings, parse_server_settings
from otpagent.server.tracing import TraceContext
from otpagent.storage.capabilities import require
from otpagent.storage.gathering import gathers

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["create_app"]

log = get_logger("otpagent.server")


def create_app(agent: IntelligentOTPAgent, settings: ServerSettings | None = None, *,
               owns_agent: bool = False, delivery: DeliveryLink | None = None) -> Starlette:
    """The ASGI app serving ``agent``; ``settings`` default to the agent's ``server`` section.

    With ``owns_agent`` the app closes the agent when its lifespan ends (one app per process).
    ``delivery``: the workers run in a process of their own (``serve``'s, see
    :mod:`otpagent.server.delivery`): ``/metrics`` shows its figures too, ``/readyz`` its state.
    """
    settings = settings or parse_server_settings(agent.config.server)
    if not settings.key_digests:
        raise ConfigError("server.api_keys", "set at least one API key (plain, or \"sha256:<hex digest>\")")
    rate_limits = None
    if any(limit is not None for limit in settings.limits.values()):
        rate_limits = require(agent.storage, Capability.RATE_LIMITS, config_path="server.limits",
                              needed_by="the service's abuse limits on the OTP endpoints")
    registry, tap = build_registry(agent)
    service = Service(agent=agent, settings=settings, tap=tap, rate_limits=rate_limits,
                      batcher=CallBatcher() if gathers(agent.storage) else None, delivery=delivery)
    document = openapi_document(settings)

    async def openapi(_request: Request) -> Response:
        return Response(json.dumps(document), media_type="application/json")

    routes: list[BaseRoute] = [
        *api_routes(), *health_routes(), *dashboard_routes(),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *explorer_routes(),
    ]
    host = AgentCallbackHost(agent)  # what provider callbacks may use of the agent, nothing more
    for route in agent.registry.http_routes:
        routes.append(Route(route.path, _plugin_endpoint(route.endpoint, host), methods=list(route.methods)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(_start, agent, service)
        try:
            yield
        finally:
            if service.batcher is not None:
                await run_in_threadpool(service.batcher.close)
            if settings.run_workers:
                await run_in_threadpool(agent.stop_processing)
            if owns_agent:
                await run_in_threadpool(agent.close)

    handler: Any = handle_exception
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        Problem: handler, InvalidRequest: handler, RateLimited: handler, OtpHeld: handler,
        HTTPException: _http_exception,
        Exception: handler,
    })
    app.state.service = service
    app.state.registry = registry if delivery is None else WithDelivery(registry, delivery)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if agent.tracing.enabled:  # outermost: the span covers the whole request, refusals included
        app.add_middleware(TraceContext, tracing=agent.tracing)
    return app


def _start(agent: IntelligentOTPAgent, service: Service) -> None:
    """Attach the latency tap, start the bus, the sinks' pumps and (if wanted) the workers."""
    agent.bus.add_sink(service.tap)
    agent.bus.start()
    if service.settings.run_workers:
        agent.start_processing()


def _plugin_endpoint(endpoint: Callable[..., Awaitable[Response]], host: CallbackHost) -> Callable[
        [Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        return await endpoint(request, host)

    return call


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return problem_response(Problem(status, headers=headers), request.url.path)


class BodyLimit:
    """Refuse any request body over ``limit`` bytes with 413, for every route (plugins' too)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = problem_response(Problem(413, f"the body is larger than {self.limit} bytes"), scope["path"])
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise Problem(413, f"the body is larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)
