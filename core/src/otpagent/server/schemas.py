"""JSON Schemas of every request and response body: one source for the OpenAPI document and
for request validation (``validation.py``), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from otpagent.fields import MAX_CHANNELS, MAX_LENGTH, MAX_METADATA_KEYS, MAX_RETRIES

__all__ = ["COMPONENTS", "MAX_BATCH", "MESSAGES_BODY", "MESSAGE_REQUEST", "OTP_SEND", "OTP_VERIFY"]

MAX_BATCH = 1000
_DATE_TIME = {"type": "string", "format": "date-time",
              "pattern": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"}


def _opt(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (optional fields may be sent as null)."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*types, "null"]}


# The patterns are what a request must look like before the engine parses it: an international
# number (``+``, a country code, digits and the usual separators) and one ``@`` with a dotted
# domain. The engine then checks the number against its country's plan and the address fully.
_PHONE = {"type": "string", "minLength": 8, "maxLength": MAX_LENGTH["phone_number"],
          "pattern": r"^\s*\+[1-9][0-9]*([ ().-]*[0-9]+)+\s*$",
          "description": "International phone number (E.164), e.g. +447700900123"}
_EMAIL = {"type": "string", "minLength": 6, "maxLength": MAX_LENGTH["email"],
          "pattern": r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$", "description": "Email address"}
_CHANNELS = {"type": "array", "minItems": 1, "maxItems": MAX_CHANNELS,
             "items": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH["channel"]},
             "description": "Only these channels, in this order of preference"}
_PRIORITY = {"type": "string", "enum": ["LOW", "MEDIUM", "HIGH", "CRITICAL"]}

MESSAGE_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "A message to deliver: a phone_number or an email is required; content is required.",
    "properties": {
        "phone_number": _opt(_PHONE),
        "email": _opt(_EMAIL),
        "message_type": {"type": "string", "enum": ["alert", "notification", "reminder"],
                         "description": "OTPs go through POST /v1/otp (the service makes the code)"},
        "content": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH["content"], "pattern": r"\S"},
        "subject": _opt({"type": "string", "maxLength": MAX_LENGTH["subject"], "pattern": r"^[^\r\n]*$"}),
        "priority": _PRIORITY,
        "scheduled_for": _opt({**_DATE_TIME, "description": "Send later (RFC 3339 date-time)"}),
        "user_id": _opt({"type": "string", "maxLength": MAX_LENGTH["user_id"]}),
        "idempotency_key": _opt({"type": "string", "minLength": 1, "maxLength": MAX_LENGTH["idempotency_key"]}),
        "channels": _opt(_CHANNELS),
        "preferred_channel": _opt({"type": "string", "minLength": 1, "maxLength": MAX_LENGTH["preferred_channel"]}),
        "max_retries": _opt({"type": "integer", "minimum": 0, "maximum": MAX_RETRIES}),
        "callback_url": _opt({"type": "string", "maxLength": MAX_LENGTH["callback_url"]}),
        "metadata": _opt({"type": "object", "maxProperties": MAX_METADATA_KEYS}),
    },
    "required": ["content"],
}

MESSAGES_BODY: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/MessageRequest"},
        {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
         "items": {"$ref": "#/components/schemas/MessageRequest"}},
    ],
}

OTP_SEND: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Send a new code: a phone_number or an email is required.",
    "properties": {
        "phone_number": _opt(_PHONE),
        "email": _opt(_EMAIL),
        "channels": _opt(_CHANNELS),
        "preferred_channel": _opt({"type": "string", "minLength": 1, "maxLength": MAX_LENGTH["preferred_channel"],
                                   "description": "A channel name or kind (sms, whatsapp, voice, email)"}),
        "purpose": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_.:-]+$"},
        "user_id": _opt({"type": "string", "maxLength": MAX_LENGTH["user_id"]}),
        "priority": _PRIORITY,
        "ttl_seconds": {"type": "integer", "minimum": 30, "maximum": 600},
        "locale": _opt({"type": "string", "maxLength": 35, "pattern": r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
                        "description": "BCP 47 language tag choosing the message template (otp.messages)"}),
    },
}

OTP_VERIFY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "recipient": {"type": "string", "minLength": 1, "maxLength": 320,
                      "description": "The phone number or email address the code was sent to"},
        "code": {"type": "string", "minLength": 1, "maxLength": 32},
        "purpose": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_.:-]+$"},
    },
    "required": ["recipient", "code"],
}

_ATTEMPT = {
    "type": "object",
    "required": ["number", "channel", "outcome", "latency_ms", "started_at"],
    "properties": {
        "number": {"type": "integer"}, "channel": {"type": "string"},
        "outcome": {"type": "string", "enum": ["accepted", "transient", "permanent"]},
        "provider_message_id": {"type": ["string", "null"]}, "error_code": {"type": ["string", "null"]},
        "error_message": {"type": ["string", "null"]}, "cost": {"type": "number"}, "latency_ms": {"type": "number"},
        "delivery_status": {"type": ["string", "null"]}, "started_at": {"type": "string", "format": "date-time"},
    },
}

_STATUS = ["queued", "scheduled", "sending", "retrying", "sent", "delivered", "read", "undelivered", "failed",
           "cancelled", "expired"]

DELIVERY_REPORT: dict[str, Any] = {
    "type": "object",
    "required": ["message_id", "status", "channel", "attempts", "attempt_count", "history", "cost", "created_at",
                 "updated_at"],
    "properties": {
        "message_id": {"type": "string"}, "status": {"type": "string", "enum": _STATUS},
        "channel": {"type": ["string", "null"]}, "recipient": {"type": "string"},
        "message_type": {"type": "string"}, "priority": {"type": "string"}, "body": {"type": "string"},
        "cost": {"type": "number"}, "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "scheduled_for": {"type": ["string", "null"]}, "provider_message_id": {"type": ["string", "null"]},
        "last_error": {"type": ["string", "null"]}, "route": {"type": "array", "items": {"type": "string"}},
        "attempts": {"type": "array", "items": _ATTEMPT},
        "attempt_count": {"type": "integer", "minimum": 0},
        "history": {"type": "array", "items": {"type": "object", "required": ["type", "at"],
                                               "properties": {"type": {"type": "string"}, "at": {"type": "string"}}}},
    },
}

PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "index": {"type": ["integer", "null"]},
                           "reason": {"type": "string"}}}},
    },
}

COMPONENTS: dict[str, Any] = {
    "MessageRequest": MESSAGE_REQUEST,
    "OtpSendRequest": OTP_SEND,
    "OtpVerifyRequest": OTP_VERIFY,
    "OtpSent": {"type": "object", "required": ["message_id", "status"], "additionalProperties": False,
                "properties": {"message_id": {"type": "string"}, "status": {"type": "string", "enum": ["queued"]}}},
    "OtpVerifyResult": {"type": "object", "required": ["verified", "reason"], "additionalProperties": False,
                        "properties": {"verified": {"type": "boolean"}, "reason": {
                            "type": "string", "enum": ["verified", "invalid", "expired", "too_many_attempts"]}}},
    "MessagesAccepted": {"oneOf": [
        {"type": "object", "required": ["message_id"], "additionalProperties": False,
         "properties": {"message_id": {"type": "string"}}},
        {"type": "object", "required": ["message_ids"], "additionalProperties": False,
         "properties": {"message_ids": {"type": "array", "items": {"type": "string"}}}},
    ]},
    "DeliveryReport": DELIVERY_REPORT,
    "Cancelled": {"type": "object", "required": ["message_id", "status"], "additionalProperties": False,
                  "properties": {"message_id": {"type": "string"},
                                 "status": {"type": "string", "enum": ["cancelled"]}}},
    "Metrics": {"type": "object",
                "required": ["queue_size", "database_stats", "workers", "last_24h", "channels", "this_process"],
                "properties": {"queue_size": {"type": "integer"}, "database_stats": {"type": "object"},
                               "workers": {"type": "object"}, "last_24h": {"type": "object"},
                               "channels": {"type": "object"}, "this_process": {"type": "object"},
                               "fraud_guard": {"type": "object", "properties": {
                                   "enabled": {"type": "boolean"}, "held": {"type": "object"}}}}},
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"},
                                                                        "checks": {"type": "object"}}},
    "Problem": PROBLEM,
}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``#/components/schemas/...`` references replaced (for the validator)."""
    if "$ref" in schema:
        return resolve(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]])
    out = dict(schema)
    if "oneOf" in out:
        out["oneOf"] = [resolve(s) for s in out["oneOf"]]
    if isinstance(out.get("items"), dict):
        out["items"] = resolve(out["items"])
    return out
