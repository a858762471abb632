"""A fake HTTP SMS gateway on 127.0.0.1, the provider the ``http-sms`` example channel talks to.

It holds each request to what such a gateway checks: ``POST /v1/messages``, ``Authorization:
Bearer <token>``, a JSON object with exactly ``to`` (E.164), ``from``, ``text`` and ``reference``.
It answers like one: ``202 {"id": "gw_...", "status": "queued"}`` (plus ``"cost"`` when set), or
``{"error": {"code": ..., "message": ...}}`` with the HTTP status. A wrong token gets 401 whose
message echoes the token it was given, as some gateways do, so a test can show that the channel
never lets it through.

Tests script answers per destination (``answer``), hold requests until released (``hold``, for
timeouts), read every request (``requests``) and the client connections (``connections``).
Anything a correct client never sends is collected in ``violations``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

import attrs

from tests.loopback import LoopbackServer

TOKEN = "gwtok_" + "7f3a9c" * 5
MESSAGES_PATH = "/v1/messages"
FIELDS = frozenset({"to", "from", "text", "reference"})
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_REASONS = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


@attrs.define
class Scripted:
    """An answer for one destination; ``times`` None means every time."""

    status: int
    code: str | None = None
    message: str | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    times: int | None = None


@attrs.frozen
class Received:
    """One request, as it arrived, and what the fake answered."""

    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: Any
    client_port: int
    status: int
    answer: Any


class FakeSmsGateway(LoopbackServer):
    """The gateway; a context manager serving on a free loopback port."""

    def __init__(self, *, token: str = TOKEN, cost: float | None = None) -> None:
        self.token = token
        self.cost = cost
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.connections: list[int] = []  # client port of every connection opened
        self.open_connections = 0
        self._scripts: dict[str, list[Scripted]] = {}
        self._held: set[str] = set()
        self._release = threading.Event()
        self._lock = threading.Lock()
        super().__init__(_handler(self), name="fake-sms-gateway")

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        super().__exit__(*exc)

    # -- scripting -----------------------------------------------------------------------------
    def answer(self, to: str, status: int, *, code: str | None = None, message: str | None = None,
               retry_after: str | None = None, times: int | None = None) -> None:
        """Answer requests for ``to`` with ``status`` (``times`` times, or always)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._scripts.setdefault(to, []).append(Scripted(status, code, message, headers, times))

    def hold(self, to: str) -> None:
        """Keep requests for ``to`` waiting (up to 10 s) until :meth:`release` or the server closes."""
        with self._lock:
            self._held.add(to)

    def release(self) -> None:
        self._release.set()

    def requests_to(self, to: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if isinstance(r.body, dict) and r.body.get("to") == to]

    # -- serving -------------------------------------------------------------------------------
    def _connected(self, port: int, opened: bool) -> None:
        with self._lock:
            if opened:
                self.connections.append(port)
            self.open_connections += 1 if opened else -1

    def _next_script(self, to: str) -> Scripted | None:
        with self._lock:
            scripts = self._scripts.get(to, [])
            if not scripts:
                return None
            script = scripts[0]
            if script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    scripts.pop(0)
            return script

    def handle(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Check one request as the gateway would; returns (status, JSON body, headers)."""
        if request.command != "POST" or request.path != MESSAGES_PATH:
            self._violation(f"{request.command} {request.path}: not the messages endpoint")
            return 404, _error("not_found", f"no route {request.command} {request.path}"), {}
        auth = request.headers.get("Authorization")
        if auth is None or not auth.startswith("Bearer "):
            self._violation("no bearer token")
            return 401, _error("missing_token", "send Authorization: Bearer <token>"), {}
        given = auth.removeprefix("Bearer ")
        if given != self.token:
            return 401, _error("invalid_token", f"the token {given} is not valid for any account"), {}
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._violation(f"Content-Type {request.headers.get('Content-Type')!r}")
            return 415, _error("unsupported_media_type", "send application/json"), {}
        body = getattr(request, "parsed_body", None)
        problem = _body_problem(body)
        if problem is not None:
            self._violation(problem)
            return 422, _error("invalid_request", problem), {}
        assert isinstance(body, dict)
        to = body["to"]
        if to in self._held:
            self._release.wait(10)
        script = self._next_script(to)
        if script is not None:
            return script.status, _error(script.code or "error", script.message or _REASONS.get(script.status, "")), \
                script.headers
        answer: dict[str, Any] = {"id": "gw_" + uuid.uuid4().hex, "status": "queued"}
        if self.cost is not None:
            answer["cost"] = self.cost
        return 202, answer, {}

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def _violation(self, what: str) -> None:
        with self._lock:
            self.violations.append(what)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if set(body) != FIELDS:
        return f"fields {sorted(body)}, expected {sorted(FIELDS)}"
    if not all(isinstance(body[k], str) and body[k] for k in FIELDS):
        return "every field must be a non-empty string"
    if not _E164.match(body["to"]):
        return f"'to' is not an E.164 number: {body['to']!r}"
    return None


def _handler(gateway: FakeSmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real gateway

        def setup(self) -> None:
            super().setup()
            gateway._connected(self.client_address[1], opened=True)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                gateway._connected(self.client_address[1], opened=False)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                self.parsed_body: Any = json.loads(raw) if raw else None
            except ValueError:
                self.parsed_body = None
            status, answer, headers = gateway.handle(self)
            gateway._record(Received(method="POST", path=self.path, authorization=self.headers.get("Authorization"),
                                     content_type=self.headers.get("Content-Type"), body=self.parsed_body,
                                     client_port=self.client_address[1], status=status, answer=answer))
            data = json.dumps(answer).encode()
            self.send_response(status, _REASONS.get(status))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST

        def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it so
            """Quiet: tests read ``requests`` instead."""

    return Handler
