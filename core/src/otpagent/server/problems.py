"""Errors as ``application/problem+json`` (RFC 9457), naming the field at fault.

Handlers raise :class:`Problem`; the app turns it (and the core's InvalidRequest, RateLimited
and OtpHeld) into a response. Anything unexpected becomes a bare 500 that reveals nothing:
configuration errors and tracebacks go to the log, never to the caller.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from otpagent.errors import FieldError, InvalidRequest, OtpHeld, RateLimited
from otpagent.logs import get_logger

__all__ = ["PROBLEM_JSON", "Problem", "field_errors", "handle_exception", "problem_response"]

PROBLEM_JSON = "application/problem+json"
log = get_logger("otpagent.server")

_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}
_TYPES = {422: "urn:otpagent:problem:invalid-request", 429: "urn:otpagent:problem:rate-limited"}
OTP_HELD_TYPE = "urn:otpagent:problem:otp-held"


class Problem(Exception):
    """An HTTP error to report as problem+json; ``errors`` lists field-level reasons."""

    def __init__(self, status: int, detail: str | None = None, *, errors: Sequence[Mapping[str, Any]] = (),
                 headers: Mapping[str, str] | None = None, type_: str | None = None) -> None:
        self.status = status
        self.detail = detail
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers or {})
        self.type = type_ or _TYPES.get(status, "about:blank")
        super().__init__(detail or _TITLES.get(status, "Error"))


def field_errors(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """The core's field errors as ``{field, index, reason}`` objects."""
    return [{"field": e.field, "index": e.index, "reason": e.reason} for e in errors]


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {"type": problem.type, "title": _TITLES.get(problem.status, "Error"),
                            "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = problem.errors
    return Response(json.dumps(body), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def to_problem(exc: Exception) -> Problem:
    """Map an exception raised by a handler or the core to the problem it stands for."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, InvalidRequest):
        return Problem(422, "the request is invalid; see errors", errors=field_errors(exc.errors))
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after))
        return Problem(429, f"rate limited ({exc.reason}); retry after {seconds} s",
                       headers={"Retry-After": str(seconds)})
    if isinstance(exc, OtpHeld):
        # 403, not 429: the caller did nothing wrong and retrying soon will not help; the hold
        # ends by itself (Retry-After: the current hold's end; an attack going on extends it)
        # or when an operator releases it.
        seconds = max(1, math.ceil(exc.retry_after))
        return Problem(403, str(exc), type_=OTP_HELD_TYPE, headers={"Retry-After": str(seconds)},
                       errors=[{"field": "phone_number", "index": None,
                                "reason": f"OTPs to numbers starting {exc.prefix} are held by the fraud guard"}])
    return Problem(500, "internal error")


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: everything becomes problem+json."""
    problem = to_problem(exc)
    if problem.status >= 500:
        log.error("request_failed", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return problem_response(problem, request.url.path)
