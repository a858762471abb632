"""Turning what callers hand us (requests, dicts, JSON files) into messages ready to enqueue.

Everything is validated whole before anything is written: a batch with one bad entry is
rejected with every error listed (index, field, reason) and nothing is enqueued.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from otpagent.errors import FieldError, InvalidRequest
from otpagent.model import Message, MessageRequest, Status
from otpagent.protocols import NewMessage
from otpagent.randompool import token_hex
from otpagent.tracing import current_trace_context

__all__ = ["load_json_requests", "new_message_id", "parse_request", "parse_requests", "to_new_message"]

_FIELDS = frozenset(f.name for f in attrs.fields(MessageRequest))
_CONVERTERS = {f.name: f.converter for f in attrs.fields(MessageRequest)}


def new_message_id() -> str:
    """Time-ordered, unguessable: ``msg_`` + 12 hex digits of milliseconds + 20 random."""
    return f"msg_{int(time.time() * 1000):012x}{token_hex(10)}"


def parse_request(data: MessageRequest | Mapping[str, Any], index: int | None = None) -> MessageRequest:
    """A request from a ``MessageRequest`` or a mapping, collecting every field error."""
    if isinstance(data, MessageRequest):
        return data
    if type(data) is not dict and not isinstance(data, Mapping):  # a dict skips the ABC's check
        raise InvalidRequest([FieldError("<entry>", f"must be an object, got {type(data).__name__}", index)])
    if _FIELDS.issuperset(data):
        try:  # the common case: valid, every converter runs once
            return MessageRequest(**data)
        except InvalidRequest:
            pass  # run each converter alone below, to report every bad field at once
    errors = _field_errors(data, index)
    if errors:
        raise InvalidRequest(errors)
    try:
        return MessageRequest(**data)
    except InvalidRequest as exc:
        raise InvalidRequest([FieldError(e.field, e.reason, index) for e in exc.errors]) from None


def _field_errors(data: Mapping[str, Any], index: int | None) -> list[FieldError]:
    """Every unknown field and every field its converter refuses, each converter run alone, so
    one entry reports all of its bad fields at once."""
    errors: list[FieldError] = []
    for key, value in data.items():
        if key not in _FIELDS:
            errors.append(FieldError(str(key), f"unknown field (expected one of {', '.join(sorted(_FIELDS))})", index))
            continue
        converter: Any = _CONVERTERS[key]
        if converter is None or value is None:
            continue
        try:
            converter(value)
        except InvalidRequest as exc:
            errors.extend(FieldError(e.field, e.reason, index) for e in exc.errors)
    return errors


def parse_requests(items: Sequence[MessageRequest | Mapping[str, Any]], *, start: int = 0) -> list[MessageRequest]:
    """Validate a whole batch; raise one :class:`InvalidRequest` listing every bad entry (by its
    index, counted from ``start``: the position of ``items`` in a larger batch)."""
    errors: list[FieldError] = []
    out: list[MessageRequest] = []
    for index, item in enumerate(items, start):
        try:
            out.append(parse_request(item, index))
        except InvalidRequest as exc:
            errors.extend(FieldError(e.field, e.reason, index if e.index is None else e.index) for e in exc.errors)
    if errors:
        raise InvalidRequest(errors)
    return out


def load_json_requests(path: str | os.PathLike[str]) -> list[MessageRequest]:
    """Read a JSON file holding a list of message objects (or ``{"messages": [...]}``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest.single("file", f"{str(file)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest.single("file", f"cannot read {str(file)!r}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest.single(
            "file", f"{file.name}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InvalidRequest.single("file", f"{file.name}: the JSON document is nested too deeply") from None
    if isinstance(data, Mapping) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list):
        raise InvalidRequest.single("file", f"{file.name}: expected a JSON list of messages")
    return parse_requests(data)


def fingerprint(request: MessageRequest) -> str:
    """A digest of what the request asks for, to tell a true retry from a reused key."""
    body = attrs.asdict(request, filter=lambda a, _v: a.name != "idempotency_key")
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def to_new_message(
    request: MessageRequest, *, now: float, body: str | None = None, secret: str | None = None,
    expires_at: float | None = None, message_id: str | None = None,
) -> NewMessage:
    """The stored form of a request: ``queued``, or ``scheduled`` when it is for later."""
    scheduled = request.scheduled_for is not None and request.scheduled_for > now
    message = Message(
        id=message_id or new_message_id(), message_type=request.message_type, priority=request.priority,
        body=body if body is not None else (request.content or ""), subject=request.subject,
        status=Status.SCHEDULED if scheduled else Status.QUEUED, created_at=now, updated_at=now,
        due_at=request.scheduled_for if scheduled and request.scheduled_for else now,
        phone_number=request.phone_number, email=request.email, user_id=request.user_id,
        idempotency_key=request.idempotency_key, channels=request.channels,
        preferred_channel=request.preferred_channel, max_retries=request.max_retries,
        callback_url=request.callback_url, metadata=request.metadata, secret=secret, expires_at=expires_at,
        trace_context=current_trace_context(),
    )
    return NewMessage(message=message, fingerprint=fingerprint(request) if request.idempotency_key else None)
