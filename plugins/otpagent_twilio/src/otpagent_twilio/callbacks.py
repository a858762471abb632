"""The status-callback receiver: Twilio tells us what became of each message and call.

Every request must carry a valid ``X-Twilio-Signature`` (the SDK's ``RequestValidator``, keyed
with the channel's auth token, over the URL Twilio requested: the public base URL, not whatever
host a proxy forwarded to us). Anything else is refused with 403 before it is even parsed for
meaning. Valid callbacks map Twilio's message and call statuses onto ours and go to
``host.record_provider_event``, which de-duplicates and applies them in one transaction, in
order, and sends an undelivered message on to its next channel. A replayed callback (same
idempotency token, or the same sid and status) changes nothing; a callback whose write failed
is answered 500 with nothing remembered, so Twilio's retry applies it. A callback can beat our
own record of the send (Twilio is fast, our commit is not instantaneous), so an unknown sid is
looked up again for a short, bounded time before the request is answered 404.
"""

from __future__ import annotations

import asyncio
import math
import time
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, get_signature_algorithm

from otpagent.logs import get_logger
from otpagent.model import Status
from otpagent.protocols import CallbackHost, ProviderEvent, ProviderEventOutcome
from otpagent_twilio.channels import TwilioChannel

__all__ = ["CALL_STATUSES", "MESSAGE_STATUSES", "billed_price", "map_status", "twilio_status_callback"]

log = get_logger("otpagent.twilio")

#: Twilio message statuses -> ours. Inbound ones (receiving, received) are not ours to track.
MESSAGE_STATUSES = {
    "accepted": Status.SENDING,
    "scheduled": Status.SENDING,
    "queued": Status.SENDING,
    "sending": Status.SENDING,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "partially_delivered": Status.DELIVERED,
    "read": Status.READ,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}

#: Twilio call statuses -> ours. A call that rang out or was refused never reached the person:
#: undelivered, so the message falls back to its next channel; ``failed`` means Twilio could not
#: place the call at all.
CALL_STATUSES = {
    "queued": Status.SENDING,
    "initiated": Status.SENDING,
    "ringing": Status.SENT,
    "in-progress": Status.SENT,
    "answered": Status.SENT,
    "completed": Status.DELIVERED,
    "busy": Status.UNDELIVERED,
    "no-answer": Status.UNDELIVERED,
    "canceled": Status.UNDELIVERED,
    "failed": Status.FAILED,
}

_POLL_INTERVAL = 0.05


def _empty() -> Response:
    return Response(status_code=204)


def map_status(params: ImmutableMultiDict[str, str]) -> tuple[str, str, Status | None]:
    """(provider sid, Twilio's status, our status or None when it is not ours to apply)."""
    call_sid = params.get("CallSid")
    if call_sid and params.get("CallStatus"):
        raw = params.get("CallStatus", "")
        return call_sid, raw, CALL_STATUSES.get(raw)
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    raw = params.get("MessageStatus") or params.get("SmsStatus") or ""
    return sid, raw, MESSAGE_STATUSES.get(raw)


async def twilio_status_callback(request: Request, host: CallbackHost) -> Response:
    """``POST /callbacks/twilio/{channel}``: verify, map and apply one Twilio status callback."""
    name = request.path_params.get("channel", "")
    channel = host.channels.get(name)
    if not isinstance(channel, TwilioChannel):
        return Response("unknown Twilio channel", status_code=404, media_type="text/plain")
    body = (await request.body()).decode("utf-8", errors="replace")
    params: ImmutableMultiDict[str, str] = ImmutableMultiDict(parse_qsl(body, keep_blank_values=True))
    url = channel.callback_url_seen(request.url.query)
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if url is None or not channel.signature_valid(url, params, signature, algorithm):
        log.warning("twilio_callback_rejected", channel=name, reason="bad signature")
        return Response("invalid signature", status_code=403, media_type="text/plain")

    sid, raw_status, status = map_status(params)
    if not sid:
        return Response("no MessageSid or CallSid", status_code=400, media_type="text/plain")
    if status is None:
        return _empty()  # a status we do not track (inbound traffic): acknowledged, nothing to do
    if not await _wait_for_sid(host, sid, channel.settings.callback_wait_seconds):
        return Response("unknown sid", status_code=404, media_type="text/plain")

    error_code = params.get("ErrorCode") or None
    error_message = params.get("ErrorMessage") or None
    if error_code and not error_message:
        error_message = f"Twilio error {error_code} ({raw_status})"
    event = ProviderEvent(
        source="twilio", event_id=request.headers.get("I-Twilio-Idempotency-Token") or f"{sid}:{raw_status}",
        provider_message_id=sid, status=status, error_code=error_code, error_message=error_message,
        occurred_at=_timestamp(params), cost=billed_price(params))
    result = await run_in_threadpool(host.record_provider_event, event)
    log.debug("twilio_status_received", channel=name, sid=sid, twilio_status=raw_status, status=status.value,
              error_code=error_code, outcome=result.outcome.value)
    if result.outcome is ProviderEventOutcome.UNKNOWN:  # deleted meanwhile (cleanup)
        return Response("unknown sid", status_code=404, media_type="text/plain")
    return _empty()


def billed_price(params: ImmutableMultiDict[str, str]) -> float | None:
    """The price Twilio billed, when the callback carries ``Price`` (Twilio writes charges as
    negative amounts, e.g. ``-0.00750``), as a positive number; None when absent or unreadable."""
    raw = params.get("Price") or params.get("price")
    if not raw:
        return None
    try:
        value = abs(float(raw))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _timestamp(params: ImmutableMultiDict[str, str]) -> float | None:
    """When the status happened, from the ``Timestamp`` some call callbacks carry (RFC 2822);
    message callbacks carry none."""
    raw = params.get("Timestamp")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None


async def _wait_for_sid(host: CallbackHost, sid: str, wait_seconds: float) -> bool:
    """Whether the store knows ``sid``, retrying for up to ``wait_seconds`` (our write may lag)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        if await run_in_threadpool(host.find_attempt, sid) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL)
