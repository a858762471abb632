"""The REST API, version 1: send and verify codes, send, inspect and cancel messages, metrics.

Handlers validate the body against the same schemas the OpenAPI document publishes, run the
agent's blocking calls off the event loop (those that write in batches when the storage gathers
writes: :mod:`otpagent.server.batching`), and let the app's exception handlers turn failures
into problem+json. Verification answers never reveal whether a recipient is known: the agent
gives ``invalid`` for an unknown recipient exactly as for a wrong code.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otpagent.errors import InvalidRequest, LimitsRefused
from otpagent.intake import parse_request
from otpagent.model import MessageRequest
from otpagent.server.bodies import JsonResponse, parse_json, read_body, schema_errors, validated
from otpagent.server.idempotency import with_idempotency
from otpagent.server.limits import check_failure_budget, record_failure, request_buckets
from otpagent.server.problems import Problem, field_errors
from otpagent.server.schemas import MESSAGES_BODY, OTP_SEND, OTP_VERIFY
from otpagent.server.service import Service, service_of

__all__ = ["api_routes"]


async def _post(request: Request, work: Callable[[Service, str, Any], Awaitable[Response]]) -> Response:
    """Authenticate, read the capped body, then run ``work`` once per Idempotency-Key."""
    service = service_of(request)
    key_id = service.require_key(request)
    raw = await read_body(request, service.settings.max_body_bytes)
    header = request.headers.get("idempotency-key")

    async def run() -> Response:
        return await work(service, key_id, parse_json(raw))

    if header is None:  # most requests: no record to look up or store (nor the URL to build)
        return await run()
    return await with_idempotency(
        service.agent.capabilities.shared_state, header, key_id=key_id,
        method=request.method, path=request.url.path, body=raw, now=service.agent.clock(), handler=run)


async def send_otp(request: Request) -> Response:
    """POST /v1/otp: issue a code and queue it for delivery."""

    async def work(service: Service, key_id: str, data: Any) -> Response:
        body = validated(data, OTP_SEND)
        recipient = body.get("phone_number") or body.get("email")
        client_ip = service.client_ip(request)

        def issue() -> str:  # off the loop, and one storage write for the abuse limits and the code
            limits = request_buckets(service.settings.limits, "otp_send", key_id=key_id, client_ip=client_ip,
                                     recipient=recipient)  # (hashing the recipient parses it: off the event loop)
            try:
                return service.agent.send_otp(
                    body.get("phone_number"), email=body.get("email"), user_id=body.get("user_id"),
                    channels=body.get("channels"), purpose=body.get("purpose", "login"),
                    priority=body.get("priority", "HIGH"), preferred_channel=body.get("preferred_channel"),
                    ttl_seconds=body.get("ttl_seconds"), locale=body.get("locale"), buckets=limits.buckets)
            except LimitsRefused as exc:
                limits.refused(exc)

        message_id = await service.run_batched(issue)
        return JsonResponse({"message_id": message_id, "status": "queued"}, status_code=202,
                            headers={"Location": f"/v1/messages/{message_id}"})

    return await _post(request, work)


async def verify_otp(request: Request) -> Response:
    """POST /v1/otp/verify: ``{"verified": bool, "reason": ...}``, the same for unknown recipients.

    A caller whose failed verifications used up its budget (per key, per address) gets a 429
    before its guess is evaluated, as does everyone while the fleet's failure rate is exceeded
    (``RateLimited`` from the core); each failure is taken from the caller's budgets.
    """

    async def work(service: Service, key_id: str, data: Any) -> Response:
        body = validated(data, OTP_VERIFY)
        client_ip = service.client_ip(request)
        limits, store, clock = service.settings.limits, service.rate_limits, service.agent.clock
        requests = request_buckets(limits, "otp_verify", key_id=key_id, client_ip=client_ip, recipient=None)

        def verify() -> tuple[bool, str]:  # off the loop, one write for the request limits and the check
            # The caller's failure budget (a read), before the guess is evaluated; then each
            # failure is taken from it.
            check_failure_budget(store, limits, key_id=key_id, client_ip=client_ip, clock=clock)
            try:
                ok, reason = service.agent.verify_otp(body["recipient"], body["code"],
                                                      purpose=body.get("purpose", "login"), buckets=requests.buckets)
            except LimitsRefused as exc:
                requests.refused(exc)
            if not ok:
                record_failure(store, limits, key_id=key_id, client_ip=client_ip, clock=clock)
            return ok, reason

        ok, reason = await service.run_batched(verify)
        return JsonResponse({"verified": ok, "reason": reason})

    return await _post(request, work)


async def send_messages(request: Request) -> Response:
    """POST /v1/messages: one message object or a list of them, validated whole, queued at once."""

    async def work(service: Service, key_id: str, data: Any) -> Response:
        single = isinstance(data, dict)
        errors = schema_errors(data, MESSAGES_BODY)
        if errors and (single or not isinstance(data, list) or any(e["index"] is None for e in errors)):
            raise Problem(422, "the request body does not match the schema; see errors", errors=errors)
        items = [data] if single else data
        # Entries that match the schema are checked for meaning too, so one answer lists every error.
        bad = {e["index"] for e in errors}
        requests: list[MessageRequest] = []  # parsed once: the agent takes them as they are
        for i, item in enumerate(items):
            if i not in bad:
                try:
                    requests.append(parse_request(_with_timestamp(item, None if single else i), None if single else i))
                except InvalidRequest as exc:
                    errors += field_errors(exc.errors)
        if errors:
            raise Problem(422, "the request is invalid; see errors", errors=sorted(errors, key=_by_index))
        try:
            ids = await service.run_batched(functools.partial(service.agent.send_bulk_messages, requests))
        except InvalidRequest as exc:
            errors = field_errors(exc.errors)
            if single:
                errors = [{**e, "index": None} for e in errors]
            raise Problem(422, "the request is invalid; see errors", errors=errors) from None
        if single:
            return JsonResponse({"message_id": ids[0]}, status_code=202, headers={"Location": f"/v1/messages/{ids[0]}"})
        return JsonResponse({"message_ids": ids}, status_code=202)

    return await _post(request, work)


def _by_index(error: Mapping[str, Any]) -> int:
    return int(error["index"] or 0)


def _with_timestamp(item: Mapping[str, Any], index: int | None) -> dict[str, Any]:
    """Parse ``scheduled_for`` (RFC 3339) here, so odd but well-formed dates get a 422, not a 500."""
    out = dict(item)
    value = out.get("scheduled_for")
    if isinstance(value, str):
        text = value.strip().replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T", 1)
        try:
            moment = datetime.fromisoformat(text)
            out["scheduled_for"] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError, OSError):
            raise InvalidRequest.single("scheduled_for", "not a valid RFC 3339 date-time", index) from None
    return out


async def get_message(request: Request) -> Response:
    """GET /v1/messages/{id}: the delivery report with every attempt and the event history."""
    service = service_of(request)
    service.require_key(request)
    message_id = request.path_params["message_id"]
    report = await run_in_threadpool(service.agent.get_delivery_report, message_id)
    if report is None:
        raise Problem(404, "no such message")
    return JSONResponse(report.to_dict())  # floats: the standard library's text, as always


async def cancel_message(request: Request) -> Response:
    """DELETE /v1/messages/{id}: cancel if not yet handed to a provider, else 409."""
    service = service_of(request)
    service.require_key(request)
    message_id = request.path_params["message_id"]
    if await run_in_threadpool(service.agent.cancel_message, message_id):
        return JsonResponse({"message_id": message_id, "status": "cancelled"})
    message = await run_in_threadpool(service.agent.storage.get_message, message_id)
    if message is None:
        raise Problem(404, "no such message")
    raise Problem(409, f"the message can no longer be cancelled (status {message.status.value})")


async def message_resource(request: Request) -> Response:
    """GET or DELETE /v1/messages/{id}."""
    if request.method == "DELETE":
        return await cancel_message(request)
    return await get_message(request)


async def get_metrics(request: Request) -> Response:
    """GET /v1/metrics: the figures of ``agent.get_metrics()``."""
    service = service_of(request)
    service.require_key_unless(service.settings.public_metrics, request)
    metrics = await run_in_threadpool(service.agent.get_metrics)
    return Response(json.dumps(metrics, default=str), media_type="application/json")


def api_routes() -> list[Route]:
    return [
        Route("/v1/otp", send_otp, methods=["POST"]),
        Route("/v1/otp/verify", verify_otp, methods=["POST"]),
        Route("/v1/messages", send_messages, methods=["POST"]),
        # One route per path, so a 405 (for OPTIONS, PUT...) lists every method in ``Allow``.
        Route("/v1/messages/{message_id}", message_resource, methods=["GET", "DELETE"]),
        Route("/v1/metrics", get_metrics, methods=["GET"]),
    ]
