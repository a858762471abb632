"""A fake Twilio REST API on 127.0.0.1 that the official SDK talks to over real HTTP.

It reads Twilio's own OpenAPI document (``/work/shared/provider-specs/twilio_api_v2010.json``)
for the two operations otpagent uses, Messages.json and Calls.json create, and holds each request
to it: HTTP Basic auth (account SID + auth token, or API key + secret), the path and its
``AccountSid`` pattern, the form fields the operation declares (types, patterns, enums, formats),
the fields it requires, and the rules Twilio enforces beyond the schema (``From`` or
``MessagingServiceSid``; ``Body``, ``ContentSid`` or ``MediaUrl``; ``Twiml``, ``Url`` or
``ApplicationSid``). It answers like Twilio: 201 with the resource JSON (``SM``/``CA`` + 32 hex
sids), or an error JSON ``{code, message, more_info, status}`` with the matching HTTP status.

Tests script errors per destination number (Twilio's own magic test numbers are pre-loaded),
read every request from ``requests``, and build signed status callbacks with
``status_callback``. Anything a real client should never send (an unknown field, a malformed
value) is also collected in ``violations`` so a test can assert there were none.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Mapping
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
from twilio.request_validator import RequestValidator

from tests.loopback import LoopbackServer
from tests.twilio.twilio_api import (
    OPERATIONS,
    SPEC_PATH,
    Operation,
    TwilioError,
    check_value,
    http_status_for,
)

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "tok" + "0" * 29
API_KEY = "SK" + "b2" * 16
API_SECRET = "keysecret" + "9" * 23

#: Twilio's magic test numbers (test credentials) and the errors they produce.
MAGIC_NUMBERS = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}


@attrs.define
class ScriptedError:
    """An error to answer for one destination; ``times`` None means every time."""

    code: int
    status: int
    message: str | None = None
    retry_after: str | None = None
    times: int | None = None
    delay: float = 0.0


@attrs.frozen
class RecordedRequest:
    """One request the fake received, as sent on the wire."""

    method: str
    path: str
    operation: str | None
    account_sid: str | None
    username: str | None
    form: Mapping[str, list[str]]
    headers: Mapping[str, str]
    answered: int
    at: float  # time.monotonic() when it arrived

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


class FakeTwilio(LoopbackServer):
    """The fake server. Use as a context manager; ``base_url`` goes into ``api_config.base_url``."""

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        self._schemas = spec["components"]["schemas"]
        self.operations = {name: Operation.from_spec(name, path, spec) for name, path in OPERATIONS.items()}
        self.accounts: dict[str, str] = {ACCOUNT_SID: AUTH_TOKEN}
        self.api_keys: dict[str, tuple[str, str]] = {API_KEY: (API_SECRET, ACCOUNT_SID)}
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.resources: dict[str, dict[str, Any]] = {}
        self._script: dict[str, ScriptedError] = {
            number: ScriptedError(code, http_status_for(code)) for number, code in MAGIC_NUMBERS.items()
        }
        self._lock = threading.Lock()
        super().__init__(self._handler_class(), name="fake-twilio")

    # -- scripting ---------------------------------------------------------------------------------
    def fail(self, number: str, code: int, *, status: int | None = None, message: str | None = None,
             retry_after: str | None = None, times: int | None = None, delay: float = 0.0) -> None:
        """Answer requests to ``number`` with Twilio error ``code`` (``times`` times, or always).

        ``number`` may carry the ``whatsapp:`` prefix to script only WhatsApp sends to it.
        """
        with self._lock:
            self._script[number] = ScriptedError(code, status or http_status_for(code), message, retry_after,
                                                 times, delay)

    def delay(self, number: str, seconds: float) -> None:
        """Answer requests to ``number`` (successfully) only after ``seconds``."""
        with self._lock:
            self._script[number] = ScriptedError(0, 201, delay=seconds)

    def requests_to(self, number: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if (r.field("To") or "").removeprefix("whatsapp:") == number]

    # -- callbacks ---------------------------------------------------------------------------------
    def status_callback(self, sid: str, status: str, *, error_code: int | None = None,
                        error_message: str | None = None,
                        extra: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
        """The (URL, form) Twilio would POST to report ``status`` for the resource ``sid``
        (``extra``: more form fields, e.g. ``Price``)."""
        resource = self.resources[sid]
        url = resource["_status_callback"]
        if sid.startswith("CA"):
            params = {"CallSid": sid, "CallStatus": status, "AccountSid": resource["account_sid"],
                      "From": resource["from"], "To": resource["to"], "Direction": "outbound-api",
                      "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events",
                      "SequenceNumber": "0", "Timestamp": formatdate(usegmt=True)}
        else:
            params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                      "AccountSid": resource["account_sid"], "From": resource["from"] or "",
                      "To": resource["to"], "ApiVersion": "2010-04-01"}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
            if error_message:
                params["ErrorMessage"] = error_message
        params.update(extra or {})
        return url, params

    @staticmethod
    def sign(url: str, params: Mapping[str, str], token: str = AUTH_TOKEN) -> str:
        """``X-Twilio-Signature`` for a POST of ``params`` to ``url``."""
        return str(RequestValidator(token).compute_signature(url, dict(params)))

    # -- request handling --------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._serve(self)

            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        form = parse_qs(raw, keep_blank_values=True)
        path = urlsplit(handler.path).path
        operation, account, username = None, None, None
        status, body, headers = 500, b"", {}
        try:
            operation, account = self._route(handler.command, path)
            username = self._authenticate(handler.headers.get("Authorization"), account, path)
            if "application/x-www-form-urlencoded" not in (handler.headers.get("Content-Type") or ""):
                self._violation(f"{path}: Content-Type is {handler.headers.get('Content-Type')!r}")
            self._validate(operation, form)
            self._apply_script(form)
            resource = self._create(operation, account, form)
            status, body = 201, json.dumps(resource).encode()
        except TwilioError as err:
            status, headers = err.status, err.headers
            body = json.dumps({"code": err.code, "message": err.message,
                               "more_info": f"https://www.twilio.com/docs/errors/{err.code}",
                               "status": err.status}).encode()
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, path, operation, account, username,
                                                 {k: list(v) for k, v in form.items()}, dict(handler.headers), status,
                                                 arrived))
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _route(self, method: str, path: str) -> tuple[str, str]:
        for name, op in self.operations.items():
            match = op.path_regex.match(path)
            if match and method == "POST":
                account = match.group("AccountSid")
                if not op.account_pattern.match(account):
                    raise TwilioError(20404, path=path)
                return name, account
        raise TwilioError(20404, path=path)

    def _authenticate(self, header: str | None, account: str, path: str) -> str:
        auth = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
        if not header or not header.startswith("Basic "):
            raise TwilioError(20003, headers=auth)
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            raise TwilioError(20003, headers=auth) from None
        if username in self.accounts and self.accounts[username] == password:
            owner = username
        elif username in self.api_keys and self.api_keys[username][0] == password:
            owner = self.api_keys[username][1]
        else:
            raise TwilioError(20003, headers=auth)
        if owner != account:
            raise TwilioError(20404, path=path)
        return username

    def _validate(self, operation: str, form: Mapping[str, list[str]]) -> None:
        op = self.operations[operation]
        to = (form.get("To") or [""])[0]
        for name, values in form.items():
            schema = op.fields.get(name)
            if schema is None:
                self._violation(f"{operation}: unknown field {name!r}")
                raise TwilioError(20001, message=f"Unknown parameter {name}")
            if schema.get("type") != "array" and len(values) > 1:
                self._violation(f"{operation}: {name} sent {len(values)} times")
            for value in values:
                problem = check_value(self._resolve(schema), value)
                if problem:
                    self._violation(f"{operation}: {name}={value!r}: {problem}")
                    raise TwilioError(20001, message=f"Invalid parameter {name}: {problem}")
        for name in op.required:
            if not form.get(name):
                raise TwilioError(21604 if operation == "messages" else 21201, to=to)
        if operation == "messages":
            if not (form.get("From") or form.get("MessagingServiceSid")):
                raise TwilioError(21603)
            if not (form.get("Body") or form.get("ContentSid") or form.get("MediaUrl")):
                raise TwilioError(21602)
            if len((form.get("Body") or [""])[0]) > 1600:
                raise TwilioError(21617)
            sender = (form.get("From") or [""])[0]
            if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
                raise TwilioError(21910)
            if form.get("ContentVariables"):
                try:
                    variables = json.loads(form["ContentVariables"][0])
                except ValueError:
                    raise TwilioError(21656) from None
                if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
                    raise TwilioError(21656)
        elif not (form.get("Twiml") or form.get("Url") or form.get("ApplicationSid")):
            raise TwilioError(21205)

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if ref:
            return self._schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]
        return schema

    def _apply_script(self, form: Mapping[str, list[str]]) -> None:
        address = (form.get("To") or [""])[0]
        number = address.removeprefix("whatsapp:")
        with self._lock:
            # "whatsapp:+44..." scripts only WhatsApp sends; "+44..." every send to the number.
            key = address if address in self._script else number
            scripted = self._script.get(key)
            if scripted is not None and scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    del self._script[key]
        if scripted is None:
            return
        if scripted.delay:
            self._stopping.wait(scripted.delay)
        if scripted.code:
            headers = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
            raise TwilioError(scripted.code, scripted.status, scripted.message, headers, to=number)

    def _create(self, operation: str, account: str, form: Mapping[str, list[str]]) -> dict[str, Any]:
        def one(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        now = formatdate(usegmt=True).replace("GMT", "+0000")
        prefix = "SM" if operation == "messages" else "CA"
        sid = prefix + uuid.uuid4().hex
        base = f"/2010-04-01/Accounts/{account}/{'Messages' if operation == 'messages' else 'Calls'}/{sid}"
        resource = dict(self.operations[operation].example)
        resource.update({"sid": sid, "account_sid": account, "to": one("To"), "from": one("From"),
                         "date_created": now, "date_updated": now, "uri": base + ".json",
                         "api_version": "2010-04-01", "direction": "outbound-api", "price": None})
        if operation == "messages":
            resource.update({"body": one("Body") or "", "messaging_service_sid": one("MessagingServiceSid"),
                             "status": "queued" if one("From") else "accepted", "date_sent": None,
                             "error_code": None, "error_message": None, "num_media": "0",
                             "subresource_uris": {"media": base + "/Media.json"}})
        else:
            resource.update({"status": "queued", "start_time": None, "end_time": None, "duration": None,
                             "answered_by": None, "to_formatted": one("To"), "from_formatted": one("From"),
                             "subresource_uris": {}})
        stored = dict(resource, _status_callback=one("StatusCallback"))
        with self._lock:
            self.resources[sid] = stored
        return resource

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)


