"""What Twilio's API promises, for the fake: the spec's create operations, field checks, errors.

The operations and their fields come from Twilio's own OpenAPI document; the error codes, their
HTTP statuses and messages are Twilio's (https://www.twilio.com/docs/api/errors).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

SPEC_PATH = Path("/work/shared/provider-specs/twilio_api_v2010.json")
OPERATIONS = {
    "messages": "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "calls": "/2010-04-01/Accounts/{AccountSid}/Calls.json",
}

#: Default messages of the errors the fake can produce (Twilio's wording).
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21656: "The ContentVariables Parameter is invalid.",
    21910: "Invalid From and To pair. From and To should be of the same channel.",
    30003: "Unreachable destination handset",
    63016: "Failed to send freeform message because you are outside the allowed window. "
           "If you are using WhatsApp, please use a Message Template.",
}

def http_status_for(code: int) -> int:
    """The HTTP status Twilio answers with for an error code."""
    return {20003: 401, 20404: 404, 20429: 429, 20500: 500, 20503: 503}.get(code, 400)



class TwilioError(Exception):
    def __init__(self, code: int, status: int | None = None, message: str | None = None,
                 headers: Mapping[str, str] | None = None, **fmt: str) -> None:
        self.code = code
        self.status = status or http_status_for(code)
        self.message = (message or ERROR_MESSAGES.get(code, f"Error {code}")).format_map(_Blank(fmt))
        self.headers = dict(headers or {})
        super().__init__(self.message)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@attrs.frozen
class Operation:
    """What the spec says about one create operation."""

    name: str
    path_regex: re.Pattern[str]
    account_pattern: re.Pattern[str]
    fields: Mapping[str, Mapping[str, Any]]
    required: tuple[str, ...]
    example: Mapping[str, Any]

    @classmethod
    def from_spec(cls, name: str, path: str, spec: Mapping[str, Any]) -> Operation:
        op = spec["paths"][path]["post"]
        assert op["security"] == [{"accountSid_authToken": []}]
        assert spec["components"]["securitySchemes"]["accountSid_authToken"]["scheme"] == "basic"
        account_param = next(p for p in op["parameters"] if p["name"] == "AccountSid")
        schema = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        examples = op["responses"]["201"]["content"]["application/json"]["examples"]
        example = next(iter(examples.values()))["value"]
        regex = re.compile("^" + re.escape(path).replace(re.escape("{AccountSid}"), "(?P<AccountSid>[^/]+)") + "$")
        return cls(name, regex, re.compile(account_param["schema"]["pattern"]), schema["properties"],
                   tuple(schema.get("required", ())), example)


_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def check_value(schema: Mapping[str, Any], value: str) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (as sent in a form), or None."""
    kind = schema.get("type")
    if kind == "array":
        return check_value(schema.get("items", {}), value)
    if kind == "integer" and not re.fullmatch(r"-?[0-9]+", value):
        return "not an integer"
    if kind == "number" and not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
        return "not a number"
    if kind == "boolean" and value.lower() not in ("true", "false"):
        return "not a boolean"
    if "enum" in schema and value not in schema["enum"]:
        return f"not one of {schema['enum']}"
    if "pattern" in schema and not re.match(schema["pattern"], value):
        return f"does not match {schema['pattern']}"
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 30):
        return "wrong length"
    fmt = schema.get("format")
    ignore_format = schema.get("x-twilio", {}).get("ignoreFormat")
    if fmt == "uri" and not ignore_format:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
            return "not an absolute http(s) URL"
    if fmt == "phone-number":
        address = value.removeprefix("whatsapp:")
        if not (_E164.match(address) or re.fullmatch(r"[0-9]{3,8}|(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}", address)):
            return "not an E.164 number, short code, sender id or channel address"
    if fmt == "endpoint" and not (_E164.match(value) or value.startswith(("client:", "sip:"))):
        return "not a phone number, client: or sip: endpoint"
    if fmt == "twiml":
        try:
            root = ET.fromstring(value)
        except ET.ParseError as exc:
            return f"not well-formed TwiML: {exc}"
        if root.tag != "Response":
            return "TwiML root element is not <Response>"
    return None
