"""The OpenAPI 3.1 document of the service, built from the schemas the handlers enforce.

Security reflects the running configuration (public metrics or health appear without it).
"""

from __future__ import annotations

from typing import Any

from otpagent.server.problems import PROBLEM_JSON
from otpagent.server.schemas import COMPONENTS
from otpagent.server.settings import ServerSettings

__all__ = ["openapi_document"]

_BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _problem(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
    return response


def _json(ref: str, description: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _problem("Missing or invalid API key")
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Repeat a POST safely: the first response is returned again for 24 hours",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_MESSAGE_LINKS = {
    "GetMessage": {"operationId": "getMessage", "parameters": {"message_id": "$response.body#/message_id"}},
    "CancelMessage": {"operationId": "cancelMessage", "parameters": {"message_id": "$response.body#/message_id"}},
}
_MESSAGE_ID = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}


_EXAMPLES: dict[str, Any] = {
    "sendOtp": {"phone_number": "+447700900123", "purpose": "login"},
    "verifyOtp": {"recipient": "+447700900123", "code": "123456"},
    "sendMessages": {"email": "ops@example.com", "content": "Disk almost full", "message_type": "alert",
                     "priority": "HIGH"},
}


def _post(operation_id: str, summary: str, body_ref: str | dict[str, Any], ok_status: str, ok: dict[str, Any],
          *, limited: bool = True, held: bool = False) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{body_ref}"} if isinstance(body_ref, str) else body_ref
    responses: dict[str, Any] = {
        ok_status: ok,
        "400": _problem("Malformed JSON"),
        "401": _UNAUTHORIZED,
        "409": _problem("Idempotency-Key reused with a different body, or still in progress"),
        "413": _problem("Body too large"),
        "422": _problem("Invalid request: errors name each field"),
    }
    if limited:
        responses["429"] = _problem("Rate limited", retry_after=True)
    if held:
        responses["403"] = _problem("The fraud guard holds OTPs to the number's prefix (suspected SMS pumping); "
                                    "nothing was sent", retry_after=True)
    return {"operationId": operation_id, "summary": summary, "security": _BEARER, "parameters": [_IDEMPOTENCY],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": schema, "example": _EXAMPLES[operation_id]}}},
            "responses": responses}


def openapi_document(settings: ServerSettings) -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    metrics_security = [] if settings.public_metrics else _BEARER
    health_security = [] if settings.public_health else _BEARER
    metrics_401 = {} if settings.public_metrics else {"401": _UNAUTHORIZED}
    health_401 = {} if settings.public_health else {"401": _UNAUTHORIZED}
    paths: dict[str, Any] = {
        "/v1/otp": {"post": _post("sendOtp", "Send a one-time code", "OtpSendRequest", "202",
                                  _json("OtpSent", "The code is queued for delivery"), held=True)},
        "/v1/otp/verify": {"post": _post("verifyOtp", "Verify a code", "OtpVerifyRequest", "200",
                                         _json("OtpVerifyResult", "Whether the code is right (the reason never "
                                                                  "reveals whether the recipient is known)"))},
        "/v1/messages": {"post": _post(
            "sendMessages", "Send one message or a list of messages",
            {"oneOf": [{"$ref": "#/components/schemas/MessageRequest"},
                       {"type": "array", "minItems": 1, "maxItems": 1000,
                        "items": {"$ref": "#/components/schemas/MessageRequest"}}]},
            "202", {**_json("MessagesAccepted", "Queued (a list gets message_ids in the same order)"),
                    "links": _MESSAGE_LINKS}, limited=False)},
        "/v1/messages/{message_id}": {
            "get": {"operationId": "getMessage", "summary": "Delivery report with every attempt", "security": _BEARER,
                    "parameters": [_MESSAGE_ID],
                    "responses": {"200": _json("DeliveryReport", "The report"), "401": _UNAUTHORIZED,
                                  "404": _problem("No such message")}},
            "delete": {"operationId": "cancelMessage", "summary": "Cancel a message not yet handed to a provider",
                       "security": _BEARER,
                       "parameters": [_MESSAGE_ID],
                       "responses": {"200": _json("Cancelled", "Cancelled"), "401": _UNAUTHORIZED,
                                     "404": _problem("No such message"),
                                     "409": _problem("Already sent or finished")}},
        },
        "/v1/metrics": {"get": {"summary": "Queue, success rate, per-channel performance",
                                "security": metrics_security,
                                "responses": {"200": _json("Metrics", "get_metrics() figures"), **metrics_401}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": metrics_security, "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **metrics_401}}},
        "/healthz": {"get": {"summary": "Liveness", "security": health_security,
                             "responses": {"200": _json("Health", "The process is up"), **health_401}}},
        "/readyz": {"get": {"summary": "Readiness: storage reachable, workers alive", "security": health_security,
                            "responses": {"200": _json("Health", "Ready"), "503": _json("Health", "Not ready"),
                                          **health_401}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "otpagent", "version": "1",
                 "description": "Deliver one-time passcodes, alerts and notifications; verify codes; "
                                "track delivery. Errors are application/problem+json (RFC 9457)."},
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key from server.api_keys"}},
        },
    }
