"""The tables of one in-memory store, and the row-level rules every write applies to them.

Rows are the same flat dicts (and JSON text) the SQL backends store, made and read by
:mod:`otpagent.storage.rows`, so a message reads back exactly as it would from a database,
and a caller's later change to an object it enqueued never leaks into the store. One lock
guards everything: each operation runs whole under it, validating and serialising first and
mutating last, so an operation that raises leaves nothing half-written.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from otpagent.model import Attempt, Message
from otpagent.protocols import MessageUpdate
from otpagent.storage.rows import attempt_to_row, event_to_row, message_from_row, message_to_row, queued_event

__all__ = ["MemoryStore", "apply_update", "prepare_message"]


class MemoryStore:
    """Everything one in-memory store holds; shared by every handle opened on it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: Notified (under ``lock``) whenever new work may be due: enqueues.
        self.work_arrived = threading.Condition(self.lock)
        self.work_generation = 0
        self.messages: dict[str, dict[str, Any]] = {}  # id -> row (with "seq" and "fingerprint")
        self.by_idempotency_key: dict[str, str] = {}
        self.attempts: dict[int, dict[str, Any]] = {}  # id -> row, ascending ids
        self.events: dict[int, tuple[Any, ...]] = {}  # id -> (message_id, type, at, data JSON)
        self.otps: dict[str, dict[str, Any]] = {}
        self.rate_limits: dict[str, float] = {}
        self.state: dict[str, str] = {}
        self.seen_events: dict[tuple[str, str], float] = {}
        self.webhook_cursors: dict[str, int] = {}
        self.webhook_deliveries: dict[int, dict[str, Any]] = {}
        self._seq = itertools.count(1)
        self._attempt_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._delivery_ids = itertools.count(1)

    @contextmanager
    def transaction(self) -> Iterator[MemoryStore]:
        """Hold the store's one lock for the whole of an operation."""
        with self.lock:
            yield self

    _TABLES = ("messages", "by_idempotency_key", "attempts", "events", "otps", "rate_limits", "state",
               "seen_events", "webhook_cursors", "webhook_deliveries", "_seq", "_attempt_ids", "_event_ids",
               "_delivery_ids")

    def snapshot(self) -> dict[str, Any]:
        """Every table as it is (for an operation that may have to be undone whole)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self._TABLES}

    def restore(self, snapshot: dict[str, Any]) -> None:
        for name, value in snapshot.items():
            setattr(self, name, value)

    # -- rows ----------------------------------------------------------------------------------
    def insert_message(self, prepared: tuple[dict[str, Any], tuple[Any, ...]]) -> None:
        """A message row and its ``queued`` event, from :func:`prepare_message` (the caller
        checked the idempotency key)."""
        row, event = prepared
        row["seq"] = next(self._seq)
        self.messages[row["id"]] = row
        if row["idempotency_key"] is not None:
            self.by_idempotency_key[row["idempotency_key"]] = row["id"]
        self.events[next(self._event_ids)] = event
        self.work_generation += 1
        self.work_arrived.notify_all()

    def insert_attempt(self, attempt: Attempt) -> None:
        row = attempt_to_row(attempt)
        row["id"] = next(self._attempt_ids)
        self.attempts[row["id"]] = row

    def insert_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Events already serialised (by :func:`~otpagent.storage.rows.event_to_row`)."""
        for row in rows:
            self.events[next(self._event_ids)] = row

    def event_row(self, event_id: int) -> dict[str, Any]:
        message_id, type_, at, data = self.events[event_id]
        return {"id": event_id, "message_id": message_id, "type": type_, "at": at, "data": data}

    def message(self, message_id: str) -> Message | None:
        row = self.messages.get(message_id)
        return message_from_row(row) if row is not None else None

    def latest_attempt(self, provider_message_id: str) -> dict[str, Any] | None:
        return next((a for a in reversed(self.attempts.values()) if a["provider_message_id"] == provider_message_id),
                    None)

    def next_delivery_id(self) -> int:
        return next(self._delivery_ids)


def prepare_message(message: Message, fingerprint: str | None, now: float) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The row of a new message and of its ``queued`` event (serialising can fail: do it first)."""
    return message_to_row(message, fingerprint), event_to_row(queued_event(message, now))


def apply_update(row: dict[str, Any], u: MessageUpdate, now: float) -> bool:
    """Apply a conditional :class:`MessageUpdate` to a message row: the same conditions and
    changes as :func:`otpagent.storage.sqlrules.message_update_statement`.
    """
    if u.expected_statuses is not None and row["status"] not in {s.value for s in u.expected_statuses}:
        return False
    if u.expected_owner is not None and row["lease_owner"] != u.expected_owner:
        return False
    if u.expected_provider_message_id is not None and row["provider_message_id"] != u.expected_provider_message_id:
        return False
    row["status"] = u.status.value
    row["updated_at"] = now
    for column, value in (
        ("due_at", u.due_at), ("route_index", u.route_index), ("channel_attempts", u.channel_attempts),
        ("attempt_count", u.attempt_count), ("channel", u.channel),
        ("provider_message_id", u.provider_message_id), ("last_error", u.last_error),
    ):
        if value is not None:
            row[column] = value
    if u.route is not None:
        row["route"] = json.dumps(list(u.route))
    row["cost"] += u.add_cost
    if u.clear_secret:
        row["secret"] = None
    if not u.keep_lease:
        row["lease_owner"] = row["lease_expires_at"] = None
    return True
