"""Test data for storage tests: messages, attempts, OTPs, at a fixed time (no pytest needed).

Time is driven explicitly through ``now`` arguments starting at :data:`T0`, never read from
the clock, so expiry windows are exact.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

from otpagent.model import Attempt, Message, MessageType, Outcome, Priority, Status
from otpagent.protocols import NewMessage, OtpIssueOutcome, OtpRecord, OtpStore, OtpVerifyOutcome

__all__ = ["T0", "code_hash", "issue", "make_attempt", "make_message", "new", "verify"]

#: A fixed "now" for every test (2027-01-15), so expiry windows are exact.
T0 = 1_800_000_000.0
_counter = itertools.count(1)


def make_message(
    *,
    priority: Priority = Priority.MEDIUM,
    now: float = T0,
    due_at: float | None = None,
    status: Status | None = None,
    message_type: MessageType = MessageType.NOTIFICATION,
    idempotency_key: str | None = None,
    secret: str | None = None,
    phone_number: str = "+447700900123",
    **fields: Any,
) -> Message:
    """A storable message; ``due_at`` in the future makes it ``scheduled``."""
    due = now if due_at is None else due_at
    if status is None:
        status = Status.SCHEDULED if due > now else Status.QUEUED
    body = "Your code is {code}" if message_type is MessageType.OTP else f"message {next(_counter)}"
    return Message(
        id=fields.pop("id", None) or uuid.uuid4().hex, message_type=message_type, priority=priority,
        body=fields.pop("body", body), status=status, created_at=now, updated_at=now, due_at=due,
        phone_number=phone_number, idempotency_key=idempotency_key, secret=secret, **fields,
    )


def new(message: Message | None = None, fingerprint: str | None = None, **fields: Any) -> NewMessage:
    """Wrap a message (made from ``fields`` when not given) for ``enqueue``."""
    return NewMessage(message=message or make_message(**fields), fingerprint=fingerprint)


def make_attempt(
    message_id: str, *, number: int = 1, channel: str = "SMS", outcome: Outcome = Outcome.ACCEPTED,
    now: float = T0, latency: float = 0.05, **fields: Any,
) -> Attempt:
    """An attempt that finished at ``now`` after ``latency`` seconds."""
    return Attempt(message_id=message_id, number=number, channel=channel, outcome=outcome,
                   started_at=now - latency, finished_at=now, **fields)


def code_hash(recipient: str, code: str) -> bytes:
    """Stands in for the agent's keyed hash: the store only ever compares bytes."""
    return hashlib.sha256(f"{recipient}:{code}".encode()).digest()


def issue(
    store: OtpStore, recipient: str, code: str, *, now: float = T0, ttl: float = 300.0,
    purpose: str = "login", cooldown: float = 30.0, max_per_hour: int = 5,
    buckets: Sequence[tuple[str, float, int]] = (),
) -> tuple[OtpIssueOutcome, float, Message]:
    """Issue an OTP through the store; returns (outcome, wait, the OTP message). ``buckets``
    are passed only when given (as the agent does)."""
    message = make_message(message_type=MessageType.OTP, secret=code, phone_number=recipient, now=now,
                           priority=Priority.HIGH, expires_at=now + ttl)
    otp = OtpRecord(id=uuid.uuid4().hex, recipient=recipient, purpose=purpose, code_hash=code_hash(recipient, code),
                    created_at=now, expires_at=now + ttl, message_id=message.id)
    item = NewMessage(message=message, fingerprint=None)
    if buckets:
        outcome, wait = store.issue_otp(otp, item, cooldown_seconds=cooldown, max_per_hour=max_per_hour, now=now,
                                        buckets=buckets)
    else:
        outcome, wait = store.issue_otp(otp, item, cooldown_seconds=cooldown, max_per_hour=max_per_hour, now=now)
    return outcome, wait, message


def verify(
    store: OtpStore, recipient: str, code: str, *, now: float = T0, purpose: str = "login", max_attempts: int = 5,
    buckets: Sequence[tuple[str, float, int]] = (),
) -> OtpVerifyOutcome:
    """Verify ``code`` for ``recipient`` through the store (hashing it as :func:`issue` did)."""
    candidate = code_hash(recipient, code)
    if buckets:
        return store.verify_otp(recipient, purpose, candidate, max_attempts=max_attempts, now=now, buckets=buckets)
    return store.verify_otp(recipient, purpose, candidate, max_attempts=max_attempts, now=now)
