"""A fake SendGrid v3 Mail Send API: a real HTTP server on 127.0.0.1 for the official SDK to call.

It checks what SendGrid checks (the bearer key, ``POST /v3/mail/send``, the JSON body against
SendGrid's own OpenAPI schema in /work/shared/provider-specs, plus the documented rules the
schema cannot express) and answers in SendGrid's shapes: 202 with ``X-Message-Id`` (200 without
one in sandbox mode), or an ``{"errors": [...]}`` body. Tests script failures per recipient and
read back every request.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs
import jsonschema

from tests.loopback import LoopbackServer

SPEC_PATH = Path("/work/shared/provider-specs/tsg_mail_v3.json")
BAD_KEY_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}
_DEFAULT_ERRORS = {
    400: [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email",
           "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}],
    401: [{"message": BAD_KEY_MESSAGE, "field": None, "help": None}],
    403: [{"message": "access forbidden", "field": None, "help": None}],
    413: [{"message": "content too large", "field": None, "help": None}],
    429: [{"message": "too many requests", "field": None, "help": None}],
    500: [{"message": "internal server error", "field": None, "help": None}],
    503: [{"message": "service unavailable", "field": None, "help": None}],
}


def mail_send_schema() -> dict[str, Any]:
    """SendGrid's request schema, with its ``components`` so that ``$ref`` resolves.

    Patched for the known gap (provider-specs/README.md): the spec types top-level
    ``custom_args`` as a string, while the SDK sends and the live API requires an object.
    """
    spec = json.loads(SPEC_PATH.read_text())
    schema = copy.deepcopy(spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"])
    schema["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    schema["components"] = spec["components"]
    return schema


@attrs.frozen
class Scripted:
    """One scripted answer for a recipient."""

    status: int
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    delay_seconds: float = 0.0


@attrs.frozen
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    message_id: str | None


class FakeSendGrid(LoopbackServer):
    """The fake server. Use as a context manager; ``base_url`` goes into ``api_config.base_url``."""

    def __init__(self, api_key: str = "SG.test-key.secret") -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._validator = jsonschema.Draft7Validator(mail_send_schema(), format_checker=jsonschema.FormatChecker())
        super().__init__(self._handler_class(), name="fake-sendgrid", poll_interval=0.05)

    # -- scripting -----------------------------------------------------------------------------
    def fail(self, recipient: str, status: int, *, times: int = 1, errors: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` sends to ``recipient`` with ``status`` (SendGrid's error JSON)."""
        with self._lock:
            for _ in range(times):
                self._scripts[recipient.lower()].append(Scripted(status, errors, dict(headers or {})))

    def rate_limit(self, recipient: str, *, reset_in: float, times: int = 1) -> None:
        """429 with SendGrid's rate-limit headers; the window resets ``reset_in`` seconds from now."""
        reset = str(int(time.time() + reset_in))
        self.fail(recipient, 429, times=times,
                  headers={"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})

    def stall(self, recipient: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next answers to ``recipient`` for ``seconds`` (to trip the client's timeout)."""
        with self._lock:
            for _ in range(times):
                self._scripts[recipient.lower()].append(Scripted(202, delay_seconds=seconds))

    def sent(self) -> list[Recorded]:
        """Requests that SendGrid accepted."""
        with self._lock:
            return [r for r in self.requests if r.status in (200, 202)]

    # -- the server ----------------------------------------------------------------------------
    def _next_script(self, recipient: str | None) -> Scripted | None:
        with self._lock:
            queue = self._scripts.get((recipient or "").lower())
            return queue.popleft() if queue else None

    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.answer(self, 405 if self.path == "/v3/mail/send" else 404, None, method="GET")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.handle(self, raw)


        return Handler

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        """Check one POST the way SendGrid does and answer it."""
        if h.path.split("?")[0] != "/v3/mail/send":
            return self.answer(h, 404, None, errors=[{"message": "not found", "field": None, "help": None}])
        if h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.answer(h, 401, None)
        if (h.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self.answer(h, 415, None, errors=[{"message": "Content-Type should be application/json.",
                                                      "field": None, "help": None}])
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(h, 400, None, errors=[{"message": "Bad Request", "field": None, "help": None}])
        problems = self.validate(body)
        if problems:
            return self.answer(h, 400, body, errors=problems)
        recipient = _first_recipient(body)
        scripted = self._next_script(recipient)
        if scripted is not None and scripted.delay_seconds:
            self._stopping.wait(scripted.delay_seconds)
            scripted = None
        if scripted is not None:
            return self.answer(h, scripted.status, body, errors=scripted.errors, headers=scripted.headers)
        sandbox = bool(body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"))
        if sandbox:
            return self.answer(h, 200, body)
        return self.answer(h, 202, body, message_id=secrets.token_urlsafe(16)[:22])

    def validate(self, body: Any) -> list[dict[str, Any]]:
        """Schema errors plus the rules SendGrid documents but the schema cannot say."""
        problems = [
            {"message": error.message, "field": ".".join(str(p) for p in error.absolute_path) or None, "help": None}
            for error in sorted(self._validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if problems or not isinstance(body, dict):
            return problems
        has_template = bool(body.get("template_id"))
        if not has_template and not body.get("content"):
            problems.append({"message": "Unless a valid template_id is provided, the content parameter is required. "
                                        "There must be at least one defined content block.", "field": "content",
                             "help": None})
        personalizations = body.get("personalizations") or []
        if not personalizations or any(not p.get("to") for p in personalizations):
            problems.append({"message": "The to array is required for all personalization objects, and must have "
                                        "at least one email object with a valid email address.",
                             "field": "personalizations.0.to", "help": None})
        if not has_template and not body.get("subject") and not all(p.get("subject") for p in personalizations):
            problems.append({"message": "The subject is required. You can get around this requirement if you use a "
                                        "template with a subject defined or if every personalization has a subject "
                                        "defined.", "field": "subject", "help": None})
        types = [c.get("type") for c in body.get("content") or []]
        if "text/plain" in types and types.index("text/plain") != 0:
            problems.append({"message": "If present, text/plain must be first, followed by text/html, followed by "
                                        "any other content.", "field": "content.0.type", "help": None})
        return problems

    def answer(self, h: BaseHTTPRequestHandler, status: int, body: Any, *, errors: list[dict[str, Any]] | None = None,
               headers: dict[str, str] | None = None, message_id: str | None = None, method: str = "POST") -> None:
        payload = b""
        if status >= 400:
            payload = json.dumps({"errors": errors or _DEFAULT_ERRORS.get(status, [{"message": "error"}])}).encode()
        self._record(Recorded(method=method, path=h.path, headers=dict(h.headers.items()), body=body, status=status,
                              message_id=message_id))
        h.send_response(status, _REASONS.get(status))
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        if message_id:
            h.send_header("X-Message-Id", message_id)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        try:
            h.end_headers()
            if payload:
                h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout), as clients of the real API do


def _first_recipient(body: dict[str, Any]) -> str | None:
    try:
        return str(body["personalizations"][0]["to"][0]["email"])
    except (KeyError, IndexError, TypeError):
        return None
