"""Fixtures for the service tests: the app served by uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from otpagent import IntelligentOTPAgent
from otpagent.server import create_app, parse_server_settings
from tests.conftest import Outbox, agent_config

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-fedcba9876543210"
#: OTHER_KEY is configured hashed, as an operator would keep it.
OTHER_KEY_HASHED = "sha256:" + hashlib.sha256(OTHER_KEY.encode()).hexdigest()


def service_config(tmp_path: Path, **server: Any) -> dict[str, Any]:
    config = agent_config(tmp_path, dispatcher={"workers": 2, "poll_interval_seconds": 0.05})
    config["server"] = {"api_keys": [API_KEY, OTHER_KEY_HASHED], **server}
    return config


class LiveServer:
    """uvicorn serving ``create_app(agent)`` in a thread, on a socket bound to 127.0.0.1:0."""

    def __init__(self, agent: IntelligentOTPAgent, *, run_workers: bool = True) -> None:
        self.agent = agent
        settings = parse_server_settings(agent.config.server, run_workers=run_workers)
        self.app = create_app(agent, settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a served agent; everything is stopped and closed at the end of the test."""
    started: list[tuple[LiveServer, IntelligentOTPAgent]] = []

    def make(config: dict[str, Any] | None = None, *, run_workers: bool = True,
             clock: Callable[[], float] = time.time, **server: Any) -> LiveServer:
        agent = IntelligentOTPAgent(config or service_config(tmp_path, **server), clock=clock)
        live = LiveServer(agent, run_workers=run_workers).__enter__()
        started.append((live, agent))
        return live

    yield make
    for live, agent in reversed(started):
        live.__exit__(None, None, None)
        agent.close()


@pytest.fixture
def live(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server()


@pytest.fixture
def api(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.jsonl")
