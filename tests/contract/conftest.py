"""Fixtures and test-data helpers for the storage contract suite.

Every test here takes the ``storage`` fixture and runs once per backend: ``sqlite`` always,
``postgres`` when the ``otpagent-postgres`` plugin is installed and the server answers (in CI
an unreachable server fails the PostgreSQL runs instead of skipping them). Time is driven
explicitly through ``now`` arguments starting at :data:`T0`, never read from the clock.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent.model import Attempt, Message, MessageType, Outcome, Priority, Status
from otpagent.protocols import NewMessage, OtpRecord, StorageBackend
from tests.contract.backends import StoreSpec, drop_schema, make_spec, require_postgres

#: A fixed "now" for every test (2027-01-15), so expiry windows are exact.
T0 = 1_800_000_000.0
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
_counter = itertools.count(1)


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    """The recipe of a fresh, empty store of each backend (dropped after the test)."""
    backend: str = request.param
    if backend == "postgres":
        require_postgres()
    spec = make_spec(backend, tmp_path)
    yield spec
    if backend == "postgres":
        drop_schema(spec.settings["schema"])


@pytest.fixture
def storage(store_spec: StoreSpec) -> Iterator[StorageBackend]:
    """A fresh, empty store, closed after the test."""
    store = store_spec.open()
    try:
        yield store
    finally:
        store.close()


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
    storage: StorageBackend, recipient: str, code: str, *, now: float = T0, ttl: float = 300.0,
    purpose: str = "login", cooldown: float = 30.0, max_per_hour: int = 5,
) -> tuple[Any, float, Message]:
    """Issue an OTP through the store; returns (outcome, wait, the OTP message)."""
    message = make_message(message_type=MessageType.OTP, secret=code, phone_number=recipient, now=now,
                           priority=Priority.HIGH, expires_at=now + ttl)
    otp = OtpRecord(id=uuid.uuid4().hex, recipient=recipient, purpose=purpose, code_hash=code_hash(recipient, code),
                    created_at=now, expires_at=now + ttl, message_id=message.id)
    outcome, wait = storage.issue_otp(otp, NewMessage(message=message, fingerprint=None),
                                      cooldown_seconds=cooldown, max_per_hour=max_per_hour, now=now)
    return outcome, wait, message


def verify(
    storage: StorageBackend, recipient: str, code: str, *, now: float = T0, purpose: str = "login",
    max_failures: int = 5, lockout: float = 900.0,
) -> Any:
    return storage.verify_otp(recipient, purpose, code_hash(recipient, code), max_failures=max_failures,
                              lockout_seconds=lockout, now=now)
