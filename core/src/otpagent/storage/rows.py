"""Converting between the value types and flat database rows; shared by every SQL backend."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from otpagent import jsontext
from otpagent.model import Attempt, Event, Message, MessageType, Outcome, Priority, Status

__all__ = [
    "ATTEMPT_COLUMNS",
    "MESSAGE_COLUMNS",
    "Row",
    "attempt_from_row",
    "attempt_to_row",
    "attempt_values",
    "event_from_row",
    "event_to_row",
    "message_from_row",
    "message_reader",
    "message_to_row",
    "message_values",
    "percentile",
    "queued_event",
    "queued_event_row",
]

class Row(Protocol):
    """A result row read by column name (``sqlite3.Row``, psycopg's dict rows, plain dicts)."""

    def __getitem__(self, key: str, /) -> Any: ...


MESSAGE_COLUMNS = (
    "id", "message_type", "priority", "body", "subject", "phone_number", "email", "user_id",
    "idempotency_key", "fingerprint", "channels", "preferred_channel", "max_retries", "callback_url",
    "metadata", "secret", "expires_at", "status", "created_at", "updated_at", "due_at", "route",
    "route_index", "channel_attempts", "attempt_count", "channel", "provider_message_id",
    "last_error", "cost", "lease_owner", "lease_expires_at", "trace_context",
)


def message_values(m: Message, fingerprint: str | None) -> tuple[Any, ...]:
    """The message's row as values in ``MESSAGE_COLUMNS`` order, for positional parameters:
    SQLite binds 32 named parameters at about twice the cost of 32 positional ones."""
    return (
        m.id, m.message_type.value, int(m.priority), m.body, m.subject, m.phone_number, m.email, m.user_id,
        m.idempotency_key, fingerprint, jsontext.dumps(list(m.channels)) if m.channels is not None else None,
        m.preferred_channel, m.max_retries, m.callback_url, jsontext.dumps(dict(m.metadata)) if m.metadata else None,
        m.secret, m.expires_at, m.status.value, m.created_at, m.updated_at, m.due_at,
        jsontext.dumps(list(m.route)) if m.route else "[]", m.route_index, m.channel_attempts, m.attempt_count,
        m.channel, m.provider_message_id, m.last_error, m.cost, m.lease_owner, m.lease_expires_at,
        jsontext.dumps(dict(m.trace_context)) if m.trace_context else None,
    )


def message_to_row(m: Message, fingerprint: str | None) -> dict[str, Any]:
    """The message's row by column name."""
    return dict(zip(MESSAGE_COLUMNS, message_values(m, fingerprint), strict=True))


#: Enum members by stored value: a dict lookup costs a fraction of the enum's own call.
_TYPES = {t.value: t for t in MessageType}
_PRIORITIES = {int(p): p for p in Priority}
_STATUSES = {s.value: s for s in Status}


def _names(text: str | None) -> tuple[str, ...]:
    """A stored JSON list of channel names (``'[]'`` mostly: no parse for that)."""
    return tuple(jsontext.loads(text)) if text and text != "[]" else ()


#: How a ``Message`` field is made from its stored column (``{0}``: the column's value); the
#: other fields are the stored value itself. Both readers below are compiled from this table.
_FROM_COLUMN = {
    "message_type": "TYPES[{0}]", "priority": "PRIORITIES[{0}]", "status": "STATUSES[{0}]",
    "channels": "tuple(loads({0})) if {0} else None", "metadata": "loads({0}) if {0} else {{}}",
    "route": "names({0})", "trace_context": "loads({0}) if {0} else None",
}
_MESSAGE_FIELDS = tuple(a.name for a in attrs.fields(Message))
_NAMESPACE = {"Message": Message, "TYPES": _TYPES, "PRIORITIES": _PRIORITIES, "STATUSES": _STATUSES,
              "loads": jsontext.loads, "names": _names}


def _compile(source: str, name: str) -> Any:
    namespace = dict(_NAMESPACE)
    exec(source, namespace)  # noqa: S102 - built from this module's own table and the class's fields
    return namespace[name]


def _values(access: Callable[[str], str], form: str) -> str:
    """Every field's value read through ``access``, each written as ``form`` (name, expression)."""
    return ", ".join(form.format(f, _FROM_COLUMN.get(f, "{0}").format(access(f))) for f in _MESSAGE_FIELDS)


def _by_name(field: str) -> str:
    return f"r[{field!r}]"


_from_row = _compile(f"def from_row(r):\n    return Message({_values(_by_name, '{0}={1}')})\n", "from_row")
_from_row_changed = _compile(
    f"def changed(r, changes):\n    return Message(**{{{_values(_by_name, '{0!r}: {1}')}, **changes}})\n", "changed")


def message_from_row(r: Row, **changes: Any) -> Message:
    """The message a row holds; ``changes`` replace fields as it is built (a claim's new lease),
    which costs nothing where building and then copying would cost a second message."""
    message: Message = _from_row_changed(r, changes) if changes else _from_row(r)
    return message


@functools.lru_cache(maxsize=16)
def message_reader(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Message]:
    """A function making the message of a row of ``columns`` (in that order, as a tuple):
    for the hot claim path, where a dict per row and then a dict of fields cost more than the
    message itself. Columns not of a message (``seq``, ``fingerprint``) are left out."""
    position = {c: i for i, c in enumerate(columns)}
    missing = [f for f in _MESSAGE_FIELDS if f not in position]
    if missing:
        raise ValueError(f"the rows lack the message column(s) {', '.join(missing)}")
    return _compile(  # type: ignore[no-any-return]
        f"def read(v):\n    return Message({_values(lambda f: f'v[{position[f]}]', '{0}={1}')})\n", "read")


ATTEMPT_COLUMNS = (
    "message_id", "number", "channel", "outcome", "started_at", "finished_at", "provider_message_id",
    "error_code", "error_message", "cost", "delivery_status", "status_updated_at",
)


def attempt_values(a: Attempt) -> tuple[Any, ...]:
    """The attempt's row as values in ``ATTEMPT_COLUMNS`` order (positional parameters)."""
    return (
        a.message_id, a.number, a.channel, a.outcome.value, a.started_at, a.finished_at, a.provider_message_id,
        a.error_code, a.error_message, a.cost, a.delivery_status.value if a.delivery_status else None,
        a.status_updated_at,
    )


def attempt_to_row(a: Attempt) -> dict[str, Any]:
    """The attempt's row by column name."""
    return dict(zip(ATTEMPT_COLUMNS, attempt_values(a), strict=True))


def attempt_from_row(r: Row) -> Attempt:
    return Attempt(
        message_id=r["message_id"], number=r["number"], channel=r["channel"], outcome=Outcome(r["outcome"]),
        started_at=r["started_at"], finished_at=r["finished_at"],
        provider_message_id=r["provider_message_id"], error_code=r["error_code"],
        error_message=r["error_message"], cost=r["cost"],
        delivery_status=Status(r["delivery_status"]) if r["delivery_status"] else None,
        status_updated_at=r["status_updated_at"],
    )


def event_to_row(event: Event) -> tuple[Any, ...]:
    """``(message_id, type, at, data)``: the columns of an inserted event, data as JSON text."""
    return event.message_id, event.type, event.at, jsontext.dumps(dict(event.data)) if event.data else None


def event_from_row(r: Row) -> Event:
    return Event(type=r["type"], message_id=r["message_id"], at=r["at"],
                 data=jsontext.loads(r["data"]) if r["data"] else {}, id=r["id"])


def _queued_data(priority: Priority, message_type: MessageType) -> dict[str, str]:
    return {"priority": priority.name, "message_type": message_type.value}


def queued_event(m: Message, now: float) -> Event:
    """The event every backend records with a newly enqueued message (``queued``/``scheduled``)."""
    return Event(type=m.status.value, message_id=m.id, at=now, data=_queued_data(m.priority, m.message_type))


@functools.cache
def _queued_data_text(priority: Priority, message_type: MessageType) -> str:
    """The data of a ``queued`` event, as :func:`event_to_row` writes it (a few distinct ones)."""
    return jsontext.dumps(_queued_data(priority, message_type))


def queued_event_row(m: Message, now: float) -> tuple[str, str, float, str]:
    """``event_to_row(queued_event(m, now))`` without building the event or encoding its data:
    the enqueue path writes one per message."""
    return m.id, m.status.value, now, _queued_data_text(m.priority, m.message_type)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]
