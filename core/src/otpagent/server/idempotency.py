"""``Idempotency-Key`` on POST requests: a repeat gets the first response, a changed body a 409.

The first response is stored durably in the storage backend's shared state under
``idem:<key id>:<sha256 of the header>`` with a fingerprint of method, path and body, so a
retry reaching another process of the fleet gets the same answer. Only successful responses
(status < 400) are kept: a request refused for its input or its rate may be corrected and
retried under the same key, as with Stripe. Keys older than 24 hours count as new.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from otpagent.protocols import IDEMPOTENCY_WINDOW_SECONDS, SharedState
from otpagent.server.problems import Problem

__all__ = ["KEY_WINDOW_SECONDS", "with_idempotency"]

KEY_WINDOW_SECONDS = IDEMPOTENCY_WINDOW_SECONDS
_MAX_KEY = 255


async def with_idempotency(storage: SharedState, header: str | None, *, key_id: str, method: str, path: str,
                           body: bytes, now: float, handler: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``handler`` once per idempotency key (or always, without a key)."""
    if header is None:
        return await handler()
    if not header or len(header) > _MAX_KEY:
        raise Problem(422, "invalid Idempotency-Key", errors=[
            {"field": "Idempotency-Key", "index": None, "reason": f"must be 1 to {_MAX_KEY} characters"}])
    state_key = f"idem:{key_id}:{hashlib.sha256(header.encode()).hexdigest()}"
    fingerprint = hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()
    token = secrets.token_hex(8)
    claim = {"fingerprint": fingerprint, "created_at": now, "token": token, "status": None}
    stored = await run_in_threadpool(_claim, storage, state_key, claim, now)
    if stored["token"] != token:
        if stored["fingerprint"] != fingerprint:
            raise Problem(409, "this Idempotency-Key was used with a different request", type_=_CONFLICT)
        if stored["status"] is None:
            raise Problem(409, "a request with this Idempotency-Key is still in progress", type_=_CONFLICT)
        return Response(stored["body"], status_code=stored["status"], media_type=stored["media_type"],
                        headers={**stored.get("headers", {}), "Idempotent-Replayed": "true"})
    try:
        response = await handler()
    except BaseException:
        await run_in_threadpool(_release, storage, state_key, now)
        raise
    if response.status_code >= 400:
        await run_in_threadpool(_release, storage, state_key, now)
        return response
    record = {**claim, "status": response.status_code, "media_type": response.media_type,
              "body": bytes(response.body).decode(), "headers": _kept_headers(response)}
    await run_in_threadpool(storage.put_state, state_key, json.dumps(record))
    return response


_CONFLICT = "urn:otpagent:problem:idempotency-conflict"


def _claim(storage: SharedState, state_key: str, claim: dict[str, Any], now: float) -> dict[str, Any]:
    """Store ``claim`` unless a live record exists; returns the record now in force."""
    value = json.dumps(claim)
    stored: dict[str, Any] = json.loads(storage.put_state(state_key, value, only_if_absent=True))
    stale = stored.get("released") or now - stored["created_at"] > KEY_WINDOW_SECONDS
    if stored["token"] != claim["token"] and stale:
        # An expired or released key is free again. Two racing claimants may both take it here;
        # the window is one round trip and both then run as if without a key.
        stored = json.loads(storage.put_state(state_key, value))
    return stored


def _release(storage: SharedState, state_key: str, now: float) -> None:
    storage.put_state(state_key, json.dumps({"released": True, "token": "", "fingerprint": "", "created_at": now,
                                             "status": None}))


def _kept_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() in ("location",)}
