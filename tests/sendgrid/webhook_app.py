"""Mounts the plugin's webhook endpoint in a tiny Starlette app and posts to it over httpx."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otpagent.callback_host import AgentCallbackHost
from otpagent.protocols import CallbackHost
from otpagent_sendgrid.webhook import WEBHOOK_PATH, receive_events


def webhook_app(agent: Any) -> Starlette:
    """The route as the service mounts it: ``endpoint(request, host)``, with the agent's
    :class:`CallbackHost` (or a stub host as it is)."""
    host = agent if isinstance(agent, CallbackHost) else AgentCallbackHost(agent)

    async def endpoint(request: Request) -> Response:
        return await receive_events(request, host)

    return Starlette(routes=[Route(WEBHOOK_PATH, endpoint, methods=["POST"])])


def post_events(agent: Any, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST ``body`` to the webhook through httpx's ASGI transport."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=webhook_app(agent))
        async with httpx.AsyncClient(transport=transport, base_url="https://otp.example") as client:
            return await client.post(WEBHOOK_PATH, content=body, headers=headers)

    return asyncio.run(go())


class LoopbackServer:
    """Serves the webhook app with uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, agent: Any) -> None:
        import uvicorn

        config = uvicorn.Config(webhook_app(agent), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="webhook-uvicorn", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
