"""Receiver for SendGrid's signed Event Webhook: ``POST /callbacks/sendgrid/events``.

SendGrid posts batches of events (a JSON array) signed with ECDSA over timestamp + raw body.
A request is accepted only when the signature verifies under a configured ``webhook_public_key``
(checked with the SDK's ``EventWebhook`` helper) and its timestamp is within ±300 s of our clock,
so a captured request cannot be replayed later. Each event goes to ``host.record_provider_event``,
which applies each ``sg_event_id`` at most once, in one transaction with its effect, because
SendGrid retries batches it thinks failed (and a batch whose write failed is answered 500 with
nothing remembered, so the retry applies it).

An event finds its message by ``sg_message_id`` (its part before the first ``.`` is the
``X-Message-Id`` we recorded at send time), cross-checked with the ``otpagent_message_id``
custom argument, which SendGrid copies onto each event as a top-level field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import structlog
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otpagent.model import Status
from otpagent.protocols import CallbackHost, ProviderEvent, ProviderEventOutcome
from otpagent_sendgrid.channel import SendGridEmailChannel
from otpagent_sendgrid.compose import MESSAGE_ID_ARG
from otpagent_sendgrid.plugin import WEBHOOK_PATH

__all__ = ["EVENT_STATUS", "TOLERANCE_SECONDS", "WEBHOOK_PATH", "BatchSummary", "apply_events", "receive_events"]

log = structlog.get_logger("otpagent_sendgrid.webhook")

TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 5 * 1024 * 1024
EVENT_SOURCE = "sendgrid"

#: SendGrid event -> our status. Engagement events mean the email arrived, so they never move
#: a message backwards: the core applies statuses in order (a late ``deferred`` after
#: ``delivered`` changes nothing). ``spamreport``/``unsubscribe`` confirm delivery and are noted.
EVENT_STATUS: Mapping[str, Status] = {
    "processed": Status.SENT,
    "deferred": Status.SENT,
    "delivered": Status.DELIVERED,
    "open": Status.READ,
    "click": Status.READ,
    "bounce": Status.UNDELIVERED,
    "dropped": Status.FAILED,
    "spamreport": Status.DELIVERED,
    "unsubscribe": Status.DELIVERED,
    "group_unsubscribe": Status.DELIVERED,
}

#: Events whose details are recorded on the attempt as an error code and message.
_NOTED = {
    "bounce": "bounced",
    "dropped": "dropped by SendGrid",
    "spamreport": "recipient reported the email as spam",
    "unsubscribe": "recipient unsubscribed",
    "group_unsubscribe": "recipient unsubscribed from the group",
}


@attrs.define
class BatchSummary:
    """What became of a batch; returned as the response body (useful in SendGrid's logs)."""

    received: int = 0
    applied: int = 0
    unchanged: int = 0
    duplicates: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


async def receive_events(request: Request, host: CallbackHost) -> Response:
    """The route registered as ``POST /callbacks/sendgrid/events``."""
    keys = _public_keys(host)
    if not keys:
        return _refuse(403, "no webhook_public_key is configured for any sendgrid-email channel")
    body = await _read_limited(request, MAX_BODY_BYTES)
    if body is None:
        return _refuse(413, "batch too large")
    signature = request.headers.get(EventWebhookHeader.SIGNATURE)
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
    if not signature or not timestamp:
        return _refuse(403, "missing signature headers")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(400, "body is not UTF-8")
    now = host.now()  # the agent's clock, so tests can drive time
    if not _fresh(timestamp, now):
        log.warning("sendgrid_webhook_stale", timestamp=timestamp[:20])
        return _refuse(403, "timestamp outside the accepted window")
    if not any(_verifies(payload, signature, timestamp, key) for key in keys):
        log.warning("sendgrid_webhook_bad_signature")
        return _refuse(403, "invalid signature")
    try:
        events = json.loads(payload)
    except ValueError:
        return _refuse(400, "body is not JSON")
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        return _refuse(400, "expected a JSON array of event objects")
    summary = await run_in_threadpool(apply_events, host, events, now)
    log.info("sendgrid_webhook_batch", **summary.as_dict())
    return JSONResponse(summary.as_dict(), status_code=200)


def apply_events(host: CallbackHost, events: Sequence[Mapping[str, Any]], now: float) -> BatchSummary:
    """Apply a verified batch through the callback host, each ``sg_event_id`` at most once."""
    summary = BatchSummary(received=len(events))
    channels = _sendgrid_channel_names(host)
    for event in events:
        name = event.get("event")
        status = EVENT_STATUS.get(name) if isinstance(name, str) else None
        provider_id = _provider_id(host, event, channels) if status is not None else None
        if status is None or provider_id is None:
            summary.ignored += 1
            continue
        assert isinstance(name, str)
        code, message = _details(name, event)
        if name in _NOTED and status is Status.DELIVERED:
            log.info("sendgrid_recipient_feedback", sendgrid_event=name, provider_message_id=provider_id)
        occurred_at = _occurred_at(event)
        event_id = event.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:  # SendGrid always sends one; be safe
            event_id = f"{provider_id}:{name}:{occurred_at}"
        result = host.record_provider_event(ProviderEvent(
            source=EVENT_SOURCE, event_id=event_id, provider_message_id=provider_id, status=status,
            error_code=code, error_message=message, occurred_at=occurred_at))
        outcome = result.outcome
        if outcome is ProviderEventOutcome.APPLIED:
            summary.applied += 1
        elif outcome is ProviderEventOutcome.REPLAY:
            summary.duplicates += 1
        elif outcome is ProviderEventOutcome.STALE:
            summary.unchanged += 1
        else:
            summary.ignored += 1
    return summary


def _occurred_at(event: Mapping[str, Any]) -> float | None:
    """The event's own ``timestamp`` (UNIX seconds), when it has a usable one."""
    value = event.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _provider_id(host: CallbackHost, event: Mapping[str, Any], channels: frozenset[str]) -> str | None:
    """The X-Message-Id of the attempt this event is about, or None when it is not ours."""
    ours = event.get(MESSAGE_ID_ARG)
    ours = ours if isinstance(ours, str) and ours else None
    sg_message_id = event.get("sg_message_id")
    if isinstance(sg_message_id, str) and sg_message_id:
        candidate = sg_message_id.split(".", 1)[0]
        attempt = host.find_attempt(candidate)
        if attempt is not None:
            if ours is not None and attempt.message_id != ours:
                log.warning("sendgrid_event_mismatch", provider_message_id=candidate)
                return None
            return candidate
    if ours is None:
        return None
    # Without a usable sg_message_id, fall back to our own id: its latest SendGrid attempt.
    for attempt in reversed(host.attempts_of(ours)):
        if attempt.channel in channels and attempt.provider_message_id:
            return str(attempt.provider_message_id)
    return None


def _details(name: str, event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if name not in _NOTED:
        return None, None
    parts = [_NOTED[name]]
    for key in ("type", "status", "reason"):
        value = event.get(key)
        if isinstance(value, str | int) and str(value):
            parts.append(f"{key}={value}")
    return name, "; ".join(parts)[:300]


def _sendgrid_channels(host: CallbackHost) -> list[SendGridEmailChannel]:
    return [c for c in host.channels.values() if isinstance(c, SendGridEmailChannel)]


def _sendgrid_channel_names(host: CallbackHost) -> frozenset[str]:
    return frozenset(c.name for c in _sendgrid_channels(host))


def _public_keys(host: CallbackHost) -> list[str]:
    return list(dict.fromkeys(k for c in _sendgrid_channels(host) if (k := c.webhook_public_key)))


def _fresh(timestamp: str, now: float) -> bool:
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    return abs(now - sent_at) <= TOLERANCE_SECONDS


@functools.lru_cache(maxsize=16)
def _ecdsa_key(public_key: str) -> Any:
    return EventWebhook().convert_public_key_to_ecdsa(public_key)


def _verifies(payload: str, signature: str, timestamp: str, public_key: str) -> bool:
    try:
        base64.b64decode(signature, validate=True)
        return bool(EventWebhook().verify_signature(payload, signature, timestamp, public_key=_ecdsa_key(public_key)))
    except (binascii.Error, ValueError, TypeError):
        return False


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it grows past ``limit`` (without holding more than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)
