"""ASGI middleware: each HTTP request to the service continues its caller's W3C trace context.

Added by :func:`otpagent.server.create_app` only when the agent traces. A message queued by the
request carries the request's trace (see :mod:`otpagent.tracing`), and a provider callback's
span is the child of the callback request's span.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otpagent.tracing import Tracing

__all__ = ["UNTRACED_PATHS", "TraceContext"]

#: Probes and scrapes: polled every few seconds, they would bury the traces that matter.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TraceContext:
    """A SERVER span per HTTP request, the child of the request's ``traceparent`` header."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        with self.tracing.server_request(scope["method"], scope["path"], scope.get("scheme", "http"),
                                         scope.get("headers", [])) as span:
            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.record(message["status"])
                await send(message)

            await self.app(scope, receive, sending)
