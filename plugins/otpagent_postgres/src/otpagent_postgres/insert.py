"""Enqueueing in one statement: the messages, their ``queued`` events and the wake-up together.

The inserts of both tables sit in one data-modifying CTE that ends in ``pg_notify``: the server
parses and plans one statement (prepared after a few calls), and in autocommit the whole
enqueue is one round trip and one commit. The notification is delivered when that commit
lands, as with a separate NOTIFY.

A batch travels as one JSON array of row arrays (:mod:`otpagent_postgres.jsonrows`) holding
only the fields that differ between its messages; a field the whole batch shares (the type,
the priority, the status, the timestamps of one enqueue, the many that are empty) travels once,
as a parameter. A bulk send of one notification to many people sends each row's id, address
and perhaps body, not 33 values: about a third of the client's CPU for a batch of 100 went to
building and encoding those rows. Both inserts read the one array, so each message's
``queued`` event costs nothing to send. The statement's text depends on which fields differ;
it is cached, and the server prepares each shape after a few calls. A single message, the
commonest enqueue, travels as plain parameters (``INSERT ... VALUES``): unpacking JSON costs
the server more than the insert itself when there is only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from otpagent import jsontext
from otpagent.protocols import NewMessage
from otpagent.storage.rows import MESSAGE_COLUMNS, message_values, queued_event_row
from otpagent_postgres.jsonrows import at_position

__all__ = ["MESSAGE_TYPES", "NOTIFY_CHANNEL", "insert_statement"]

NOTIFY_CHANNEL = "otpagent_enqueued"

#: The SQL type of each column of ``MESSAGE_COLUMNS`` (checked against the table by a test).
MESSAGE_TYPES: dict[str, str] = {
    **dict.fromkeys(MESSAGE_COLUMNS, "text"),
    "priority": "smallint", "max_retries": "integer", "route_index": "integer", "channel_attempts": "integer",
    "attempt_count": "integer", "expires_at": "double precision", "created_at": "double precision",
    "updated_at": "double precision", "due_at": "double precision", "cost": "double precision",
    "lease_expires_at": "double precision",
}

#: The data of each message's ``queued`` event: a field of the batch like the columns.
_EVENT_DATA = "event_data"
#: The time of every ``queued`` event of the batch (the enqueue's): always a parameter.
_EVENT_AT = "event_at"
_FIELDS = (*MESSAGE_COLUMNS, _EVENT_DATA)
_TYPES = {**MESSAGE_TYPES, _EVENT_DATA: "text", _EVENT_AT: "double precision"}

_INSERT_ONE = (
    f"WITH m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(MESSAGE_COLUMNS))})), "
    "e AS (INSERT INTO events (message_id, type, at, data) VALUES (%s, %s, %s, %s)) "
    "SELECT pg_notify(%s, %s)"
).encode()


@lru_cache(maxsize=64)
def _batch_insert(varying: tuple[str, ...]) -> tuple[bytes, tuple[str, ...]]:
    """The batch statement when the fields ``varying`` travel in the rows (in that order) and
    the others as parameters; and the shared fields, in the order their parameters appear.

    Parameters: the JSON rows, then the shared fields in the returned order, then the notify
    channel and the schema.
    """
    position = {field: i for i, field in enumerate(varying)}
    shared: list[str] = []

    def value(field: str) -> str:
        if field in position:
            return at_position(position[field], _TYPES[field])
        shared.append(field)
        return f"%s::{_TYPES[field]}"

    columns = ", ".join(value(c) for c in MESSAGE_COLUMNS)
    event = ", ".join(value(f) for f in ("id", "status", _EVENT_AT, _EVENT_DATA))
    sql = (
        "WITH rows AS (SELECT jsonb_array_elements(%s::jsonb) AS a), "
        f"m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) SELECT {columns} FROM rows), "
        f"e AS (INSERT INTO events (message_id, type, at, data) SELECT {event} FROM rows) "
        "SELECT pg_notify(%s, %s)"
    )
    return sql.encode(), tuple(shared)


def insert_statement(items: Sequence[NewMessage], now: float, schema: str) -> tuple[bytes, list[Any]]:
    """The statement inserting ``items`` (none of them keyed: nothing can clash but an id) with
    their ``queued`` events, and waking this schema's idle workers.

    A lone message travels as plain parameters, a batch as one JSON array of the fields that
    differ between its messages, with the fields they share as parameters.
    """
    if len(items) == 1:
        item = items[0]
        event = queued_event_row(item.message, now)
        return _INSERT_ONE, [*message_values(item.message, item.fingerprint), *event, NOTIFY_CHANNEL, schema]
    # Each row: the message's values in MESSAGE_COLUMNS order, then its event's data (_FIELDS).
    rows = [(*message_values(i.message, i.fingerprint), queued_event_row(i.message, now)[3]) for i in items]
    count = len(rows)
    by_field = list(zip(*rows, strict=True))
    at = [k for k, column in enumerate(by_field) if column.count(column[0]) != count]
    sql, shared = _batch_insert(tuple(_FIELDS[k] for k in at))
    first = dict(zip(_FIELDS, rows[0], strict=True))
    values = jsontext.dumps([[r[k] for k in at] for r in rows])
    return sql, [values, *(now if f == _EVENT_AT else first[f] for f in shared), NOTIFY_CHANNEL, schema]
