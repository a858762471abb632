"""Turns the gateway's answer into a :class:`~otpagent.model.SendResult`.

The channel classifies; the core decides (retry with backoff, pause the channel, fall back to the
next channel, open the circuit). A pure function of (status, body, ``Retry-After``, now), so the
whole table is tested without a network:

====================================  ==========================================================
answer                                SendResult
====================================  ==========================================================
2xx ``{"id": ..., "cost": ...}``      accepted (provider id; billed cost when the gateway sends it)
429                                   transient, ``retry_after`` from ``Retry-After``
408, 5xx                              transient (``retry_after`` too when the gateway sends one)
401, 403                              permanent, scope CHANNEL: bad or revoked token (opens the circuit)
404, 405, 3xx                         permanent, scope CHANNEL: ``base_url`` is wrong
other 4xx (400, 422...)               permanent, scope MESSAGE: this recipient or text is refused
====================================  ==========================================================

Timeouts and connection errors never reach here: the channel classifies them as transient.
The code of each failure is the gateway's own (``{"error": {"code": ...}}``), else ``http-<status>``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from otpagent.model import FailureScope, SendResult

__all__ = ["MAX_RETRY_AFTER_SECONDS", "classify_answer", "parse_retry_after"]

#: A gateway's ``Retry-After`` pauses the channel for every worker: cap it, so that one bogus
#: header cannot take the channel out for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
_MAX_REASON = 300
_MAX_CODE = 64


def classify_answer(status: int, body: bytes, retry_after: str | None, *, now: float) -> SendResult:
    """Classify one HTTP answer of ``POST /v1/messages`` (see the table above)."""
    payload = _json_object(body)
    if 200 <= status < 300:
        provider_id = payload.get("id")
        return SendResult.accepted(str(provider_id) if provider_id not in (None, "") else None,
                                   cost=_amount(payload.get("cost")))
    code, detail = _error(payload, status)
    reason = f"gateway answered HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        return SendResult.transient(reason, code=code, retry_after=parse_retry_after(retry_after, now))
    if status in (401, 403, 404, 405) or 300 <= status < 400:
        return SendResult.permanent(reason, code=code, scope=FailureScope.CHANNEL)
    if 400 <= status < 500:
        return SendResult.permanent(reason, code=code, scope=FailureScope.MESSAGE)
    return SendResult.transient(reason, code=code)  # 1xx as a final answer: a confused proxy


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"30"``) or an HTTP date
    (``"Wed, 26 Nov 2025 10:00:30 GMT"``, counted from ``now``); None when absent or unreadable.
    Never negative, never more than :data:`MAX_RETRY_AFTER_SECONDS`."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)  # RFC 9110 says whole seconds; a fraction does no harm
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _amount(value: Any) -> float | None:
    """The billed cost, when the gateway sent a usable one (a finite, non-negative number)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _error(payload: dict[str, Any], status: int) -> tuple[str, str]:
    """(code, message) from ``{"error": {"code": ..., "message": ...}}``, bounded in length."""
    error = payload.get("error")
    code = message = ""
    if isinstance(error, dict):
        code = str(error.get("code") or "")[:_MAX_CODE]
        message = str(error.get("message") or "")[:_MAX_REASON]
    return (code if code.isprintable() and code else f"http-{status}"), message
