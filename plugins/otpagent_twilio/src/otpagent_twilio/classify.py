"""Turns a failed Twilio API call into a :class:`~otpagent.model.SendResult`.

The channel only classifies; the core decides. Three classes (design §8):

* **transient**: rate limits (HTTP 429, 20429), Twilio-side failures (5xx), queue overflow and
  unreachable handsets, connection errors and timeouts: worth retrying, honouring ``Retry-After``;
* **permanent for the message**: the recipient is invalid, unreachable by this medium, opted out
  or blocked: the next channel may still reach the person;
* **permanent for the channel**: bad credentials, a suspended or missing account, a sender that is
  not ours: every message would fail the same way, so the core opens the channel's circuit.

Codes not listed fall back on the HTTP status (4xx: the message, 401/403/404: the channel,
429/5xx: transient). The reason is Twilio's own message and the code Twilio's number, so each
attempt's record says exactly what Twilio said.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.response import Response

from otpagent.model import FailureScope, SendResult

__all__ = ["CHANNEL_CODES", "MESSAGE_CODES", "TRANSIENT_CODES", "classify_error", "parse_retry_after"]

#: Errors that say this recipient cannot be reached this way: move on to the next channel.
MESSAGE_CODES = frozenset({
    21211,  # invalid 'To' phone number
    21217,  # phone number does not appear to be valid (calls)
    21214,  # 'To' number cannot be reached (calls)
    21215,  # geo permission: calls to this region are not enabled
    21216,  # call blocked: high-risk destination
    21408,  # permission to send to this region is not enabled
    21602,  # message body required
    21608,  # trial account: the number is unverified
    21610,  # the recipient unsubscribed (replied STOP)
    21612,  # the 'To' number is not reachable by this route
    21614,  # 'To' is not a mobile number
    21617,  # body exceeds the concatenated length limit
    21635,  # 'To' cannot be a landline / blocked destination
    30005,  # unknown destination handset
    30006,  # landline or unreachable carrier
    30007,  # filtered by the carrier
    63016,  # WhatsApp: outside the 24 h session window, a template is required
    63024,  # WhatsApp: invalid message recipient
})

#: Errors that condemn the whole channel (credentials, account, sender): open the circuit.
CHANNEL_CODES = frozenset({
    10001,  # account is not active
    20003,  # authentication failed
    20005,  # account not active (suspended or closed)
    20008,  # test credentials cannot use this resource
    20403,  # forbidden: the account lacks permission
    20404,  # the account (the only resource in a create's path) was not found
    21212,  # invalid 'From' number
    21606,  # 'From' is not an SMS-capable number of this account
    21659,  # 'From' is not a Twilio number
    21660,  # 'From' does not belong to this account
    21703,  # the Messaging Service has no sender
    21704,  # the Messaging Service has no valid sender
    30002,  # account suspended
    63007,  # WhatsApp: the sender is not registered with this account
})

#: Errors worth retrying on this channel after a while.
TRANSIENT_CODES = frozenset({
    14107,  # SMS send rate limit exceeded
    20429,  # too many requests
    20500,  # internal server error
    20503,  # service unavailable
    30001,  # queue overflow
    30003,  # unreachable destination handset (switched off, out of coverage)
    30008,  # unknown error
    63018,  # WhatsApp: rate limit exceeded
})


def classify_error(exc: BaseException, response: Response | None, timeout: float) -> SendResult:
    """Classify ``exc`` raised by the SDK; ``response`` is the HTTP response it came from, if any."""
    if isinstance(exc, requests.Timeout):
        return SendResult.transient(f"no answer from Twilio within {timeout:g}s", code="timeout")
    if isinstance(exc, requests.ConnectionError):
        return SendResult.transient(f"cannot connect to Twilio ({type(exc).__name__})", code="connection")
    if isinstance(exc, requests.RequestException):
        return SendResult.transient(f"HTTP error talking to Twilio ({type(exc).__name__})", code="http")
    status, code, message = _details(exc, response)
    label = str(code) if code is not None else f"http-{status}"
    retry_after = parse_retry_after(response.headers.get("Retry-After") if response is not None else None)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return SendResult.transient(message, code=label, retry_after=retry_after)
    if code in CHANNEL_CODES:
        return SendResult.permanent(message, code=label, scope=FailureScope.CHANNEL)
    if code in MESSAGE_CODES:
        return SendResult.permanent(message, code=label, scope=FailureScope.MESSAGE)
    if status in (401, 403, 404):
        return SendResult.permanent(message, code=label, scope=FailureScope.CHANNEL)
    if 400 <= status < 500:
        return SendResult.permanent(message, code=label, scope=FailureScope.MESSAGE)
    # Not an HTTP error at all (unparseable answer...): assume a passing problem.
    return SendResult.transient(message, code=label, retry_after=retry_after)


def _details(exc: BaseException, response: Response | None) -> tuple[int, int | None, str]:
    """(HTTP status, Twilio error code, Twilio's message), best source first."""
    status = response.status_code if response is not None else 0
    code: int | None = None
    message = ""
    payload = _json(response)
    if payload:
        code = _int(payload.get("code"))
        message = str(payload.get("message") or payload.get("detail") or payload.get("title") or "")
    if isinstance(exc, TwilioRestException):
        status = status or int(exc.status)
        code = code if code is not None else _int(exc.code)
        message = message or str(exc.msg)
    elif isinstance(exc, TwilioServiceException):
        status = status or int(exc.status)
        code = code if code is not None else _int(exc.code)
        message = message or str(exc.detail or exc.title)
    elif isinstance(exc, TwilioException) and not message:
        message = f"Twilio SDK error ({type(exc).__name__})"
    if code == status:  # the SDK fills in the HTTP status when the body has no code
        code = None
    return status, code, message or f"HTTP {status} from Twilio"


def _json(response: Response | None) -> dict[str, Any] | None:
    if response is None or not response.text:
        return None
    try:
        data = json.loads(response.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
