"""The value types every part of otpagent speaks: requests, messages, attempts, results.

They are frozen attrs classes with converters at the boundary, so an invalid ``MessageRequest``
cannot exist: construction raises :class:`~otpagent.errors.InvalidRequest` naming the field.
Timestamps are POSIX seconds (``float``) inside the engine; reports expose ``datetime`` too.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from otpagent import fields
from otpagent.errors import InvalidRequest

__all__ = [
    "TERMINAL_STATUSES",
    "Attempt",
    "ChannelKind",
    "DeliveryReport",
    "Envelope",
    "Event",
    "FailureScope",
    "Message",
    "MessageRequest",
    "MessageType",
    "Outcome",
    "Priority",
    "SendResult",
    "Status",
]


class Priority(enum.IntEnum):
    """How urgent a message is; higher values are dispatched first."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: Priority | str | int) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            exact = _PRIORITY_NAMES.get(value)
            if exact is not None:  # as callers mostly write it ("HIGH"): one lookup
                return exact
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(p.name for p in cls)
        raise InvalidRequest.single("priority", f"unknown priority {value!r} (expected one of {choices})")


class MessageType(enum.StrEnum):
    """What a message is for. ``otp`` messages carry a code the agent generates."""

    OTP = "otp"
    ALERT = "alert"
    NOTIFICATION = "notification"
    REMINDER = "reminder"

    @classmethod
    def parse(cls, value: MessageType | str) -> MessageType:
        if isinstance(value, MessageType):
            return value
        if isinstance(value, str):
            exact = _MESSAGE_TYPE_VALUES.get(value)
            if exact is not None:  # as callers mostly write it ("otp"): one lookup
                return exact
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        choices = ", ".join(t.value for t in cls)
        raise InvalidRequest.single(
            "message_type", f"unknown message type {value!r} (expected one of {choices})"
        )


_PRIORITY_NAMES: dict[str, Priority] = {p.name: p for p in Priority}
_MESSAGE_TYPE_VALUES: dict[str, MessageType] = {t.value: t for t in MessageType}


class ChannelKind(enum.StrEnum):
    """The medium a channel delivers over; routing maps priorities onto kinds."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    EMAIL = "email"


class Status(enum.StrEnum):
    """Where a message is in its lifecycle (see docs/architecture.md)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


#: Statuses after which the dispatcher never touches a message again.
TERMINAL_STATUSES = frozenset(
    {Status.DELIVERED, Status.READ, Status.FAILED, Status.CANCELLED, Status.EXPIRED}
)

#: Statuses a worker may claim.
CLAIMABLE_STATUSES = frozenset({Status.QUEUED, Status.SCHEDULED, Status.RETRYING})

#: Order of provider-reported progress. A callback may only move a message forward in this
#: order, so a late ``sent`` never overwrites ``delivered`` (undelivered/failed rank with
#: delivered: whichever final word arrives first stands).
PROGRESS_RANK: Mapping[Status, int] = {
    Status.QUEUED: 0,
    Status.SCHEDULED: 0,
    Status.RETRYING: 0,
    Status.SENDING: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.UNDELIVERED: 3,
    Status.FAILED: 3,
    Status.READ: 4,
}


class Outcome(enum.StrEnum):
    """What a channel says happened to one send."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class FailureScope(enum.StrEnum):
    """Whom a permanent failure condemns: this message on this channel, or the whole channel."""

    MESSAGE = "message"
    CHANNEL = "channel"


def _message_type(value: MessageType | str) -> MessageType:
    return MessageType.parse(value)


def _priority(value: Priority | str | int) -> Priority:
    return Priority.parse(value)


@attrs.frozen(kw_only=True)
class MessageRequest:
    """What a caller asks otpagent to deliver.

    At least one recipient (``phone_number`` or ``email``) is required. Phone numbers are
    normalised to E.164; content is required except for OTPs, whose body the agent renders.
    ``channels`` restricts delivery to the named channels, in that order of preference;
    ``preferred_channel`` (a channel name or a kind such as ``"WhatsApp"``, as in the original
    product) only moves it to the front. ``max_retries`` overrides the retry budget per channel.
    """

    phone_number: str | None = attrs.field(default=None, converter=fields.optional_phone)
    email: str | None = attrs.field(default=None, converter=fields.optional_email)
    message_type: MessageType = attrs.field(default=MessageType.NOTIFICATION, converter=_message_type)
    content: str | None = attrs.field(default=None, converter=fields.content)
    subject: str | None = attrs.field(default=None, converter=fields.subject)
    priority: Priority = attrs.field(default=Priority.MEDIUM, converter=_priority)
    scheduled_for: float | None = attrs.field(default=None, converter=fields.scheduled_for)
    user_id: str | None = attrs.field(default=None, converter=fields.user_id)
    idempotency_key: str | None = attrs.field(default=None, converter=fields.idempotency_key)
    channels: tuple[str, ...] | None = attrs.field(default=None, converter=fields.channels)
    preferred_channel: str | None = attrs.field(default=None, converter=fields.preferred_channel)
    max_retries: int | None = attrs.field(default=None, converter=fields.max_retries)
    callback_url: str | None = attrs.field(default=None, converter=fields.callback_url)
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=fields.metadata)

    def __attrs_post_init__(self) -> None:
        if self.phone_number is None and self.email is None:
            raise InvalidRequest.single("phone_number", "a phone_number or an email address is required")
        if self.message_type is not MessageType.OTP and not (self.content and self.content.strip()):
            raise InvalidRequest.single("content", f"required for {self.message_type.value} messages")

    @property
    def recipient(self) -> str:
        """The main recipient: the phone number, else the email address."""
        return self.phone_number or self.email or ""


@attrs.frozen(kw_only=True)
class Envelope:
    """What a channel is handed for one send: rendered, with the OTP code if any."""

    message_id: str
    message_type: MessageType
    priority: Priority
    body: str
    phone_number: str | None = None
    email: str | None = None
    subject: str | None = None
    code: str | None = attrs.field(default=None, repr=False)  # the clear OTP code: never printed
    expires_at: float | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Message:
    """A message as stored: the request plus its place in the lifecycle.

    ``body`` never contains an OTP code: OTP bodies hold the ``{code}`` placeholder and the code
    itself lives in ``secret``, sealed (``enc1:...``, see :mod:`otpagent.otp_seal`), until the
    message reaches a final state or the code expires; a worker opens it in memory just before
    a send.
    """

    id: str
    message_type: MessageType
    priority: Priority
    body: str
    status: Status
    created_at: float
    updated_at: float
    due_at: float
    phone_number: str | None = None
    email: str | None = None
    subject: str | None = None
    user_id: str | None = None
    idempotency_key: str | None = None
    channels: tuple[str, ...] | None = None
    preferred_channel: str | None = None
    max_retries: int | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    secret: str | None = attrs.field(default=None, repr=False)  # the sealed code (clear only in a worker)
    expires_at: float | None = None
    route: tuple[str, ...] = ()
    route_index: int = 0
    channel_attempts: int = 0
    attempt_count: int = 0
    channel: str | None = None
    provider_message_id: str | None = None
    last_error: str | None = None
    cost: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    #: The W3C trace context (``traceparent``, ``tracestate``) of the enqueue that created the
    #: message, when tracing is on: workers continue that trace (see :mod:`otpagent.tracing`).
    trace_context: Mapping[str, str] | None = None

    @property
    def recipient(self) -> str:
        return self.phone_number or self.email or ""

    @property
    def current_channel(self) -> str | None:
        return self.route[self.route_index] if self.route_index < len(self.route) else None

    def envelope(self) -> Envelope:
        """Render the message for a channel (the code substituted into the body)."""
        body = self.body.replace("{code}", self.secret) if self.secret else self.body
        return Envelope(
            message_id=self.id,
            message_type=self.message_type,
            priority=self.priority,
            body=body,
            phone_number=self.phone_number,
            email=self.email,
            subject=self.subject,
            code=self.secret,
            expires_at=self.expires_at,
            metadata=self.metadata,
        )


def _message_copier() -> Any:
    """``copy(message)``: a new ``Message`` holding the same values, its slots set one by one.

    ``attrs.evolve`` gathers every field into keywords and runs ``__init__`` again, about twice
    the cost, paid for every message a worker routes. ``Message`` has no converters or
    validators to run again, so the copy is the same value."""
    names = [a.name for a in attrs.fields(Message)]
    source = "\n".join(["def copy(m):", "    c = new(Message)", *(f"    put(c, {n!r}, m.{n})" for n in names),
                        "    return c"])
    namespace: dict[str, Any] = {"new": object.__new__, "put": object.__setattr__, "Message": Message}
    exec(source, namespace)  # noqa: S102 - the source is built from the class's own field names
    return namespace["copy"]


_copy_message = _message_copier()
_MESSAGE_FIELDS = frozenset(a.name for a in attrs.fields(Message))


def message_with(message: Message, **changes: Any) -> Message:
    """``attrs.evolve(message, **changes)`` at a fraction of its cost (for the dispatch path)."""
    unknown = changes.keys() - _MESSAGE_FIELDS
    if unknown:
        raise TypeError(f"Message has no field(s) {', '.join(sorted(unknown))}")
    copy: Message = _copy_message(message)
    for name, value in changes.items():
        object.__setattr__(copy, name, value)
    return copy


@attrs.frozen(kw_only=True)
class SendResult:
    """A channel's verdict on one send. Use the constructors, not the initialiser."""

    outcome: Outcome
    provider_message_id: str | None = None
    reason: str | None = None
    code: str | None = None
    retry_after: float | None = None
    scope: FailureScope = FailureScope.MESSAGE
    cost: float | None = None

    @classmethod
    def accepted(cls, provider_message_id: str | None, *, cost: float | None = None) -> SendResult:
        return cls(outcome=Outcome.ACCEPTED, provider_message_id=provider_message_id, cost=cost)

    @classmethod
    def transient(
        cls, reason: str, *, code: str | None = None, retry_after: float | None = None
    ) -> SendResult:
        return cls(outcome=Outcome.TRANSIENT, reason=reason, code=code, retry_after=retry_after)

    @classmethod
    def permanent(
        cls, reason: str, *, code: str | None = None, scope: FailureScope = FailureScope.MESSAGE
    ) -> SendResult:
        return cls(outcome=Outcome.PERMANENT, reason=reason, code=code, scope=scope)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


@attrs.frozen(kw_only=True)
class Attempt:
    """One try of one message on one channel: a row of ``delivery_reports``."""

    message_id: str
    number: int
    channel: str
    outcome: Outcome
    started_at: float
    finished_at: float
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    cost: float = 0.0
    delivery_status: Status | None = None
    status_updated_at: float | None = None

    @property
    def latency_ms(self) -> float:
        return (self.finished_at - self.started_at) * 1000.0


@attrs.frozen(kw_only=True)
class Event:
    """A state change, emitted to event sinks and recorded in the ``events`` table."""

    type: str
    message_id: str | None
    at: float = attrs.field(factory=time.time)
    data: Mapping[str, Any] = attrs.field(factory=dict)
    id: int | None = None


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@attrs.frozen(kw_only=True)
class DeliveryReport:
    """Everything known about one message: status, channel, attempts, cost and history.

    ``attempts`` is how many times a channel was tried, as the original product prints it
    (``f"Attempts: {report.attempts}"``); ``attempt_log`` holds each try (channel, outcome,
    provider id, error, cost, timing, delivery status). ``to_dict()`` and the REST report keep
    the records under ``"attempts"`` and add ``"attempt_count"``.
    """

    message_id: str
    status: Status
    channel: str | None
    recipient: str
    message_type: MessageType
    priority: Priority
    body: str
    attempt_log: tuple[Attempt, ...]
    history: tuple[Event, ...]
    cost: float
    created_at: datetime
    updated_at: datetime
    scheduled_for: datetime | None
    provider_message_id: str | None
    last_error: str | None
    route: tuple[str, ...]

    @property
    def attempts(self) -> int:
        """How many attempts were made (each one is in :attr:`attempt_log`)."""
        return len(self.attempt_log)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by the CLI and the HTTP API)."""
        return {
            "message_id": self.message_id,
            "status": self.status.value,
            "channel": self.channel,
            "recipient": self.recipient,
            "message_type": self.message_type.value,
            "priority": self.priority.name,
            "body": self.body,
            "cost": round(self.cost, 6),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "provider_message_id": self.provider_message_id,
            "last_error": self.last_error,
            "route": list(self.route),
            "attempt_count": self.attempts,
            "attempts": [
                {
                    "number": a.number,
                    "channel": a.channel,
                    "outcome": a.outcome.value,
                    "provider_message_id": a.provider_message_id,
                    "error_code": a.error_code,
                    "error_message": a.error_message,
                    "cost": a.cost,
                    "latency_ms": round(a.latency_ms, 3),
                    "delivery_status": a.delivery_status.value if a.delivery_status else None,
                    "started_at": _dt(a.started_at).isoformat(),  # type: ignore[union-attr]
                }
                for a in self.attempt_log
            ],
            "history": [
                {**dict(e.data), "type": e.type, "at": _dt(e.at).isoformat()}  # type: ignore[union-attr]
                for e in self.history
            ],
        }


def mask_code(body: str) -> str:
    """The body as shown in reports: the OTP placeholder replaced by a mask."""
    return body.replace("{code}", "••••••")


def to_datetime(ts: float | None) -> datetime | None:
    return _dt(ts)
