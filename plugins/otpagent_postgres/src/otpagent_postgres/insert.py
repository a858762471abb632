"""Enqueueing in one statement: the messages, their ``queued`` events and the wake-up together.

The inserts of both tables sit in one data-modifying CTE that ends in ``pg_notify``: the server
parses and plans one statement (prepared after a few calls), and in autocommit the whole
enqueue is one round trip and one commit. The notification is delivered when that commit
lands, as with a separate NOTIFY.

A batch travels as one JSON array per table, each row an array of its values in column order,
read by position (:mod:`otpagent_postgres.jsonrows`): one statement serves every batch size.
(Against rows as objects through ``json_populate_recordset``: about 8 µs less client CPU per
message, and less on the server.) A single message, the commonest enqueue, travels as plain
parameters (``INSERT ... VALUES``): unpacking JSON costs the server more than the insert itself
when there is only one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from otpagent.protocols import NewMessage
from otpagent.storage.rows import MESSAGE_COLUMNS, message_to_row, queued_event_row
from otpagent_postgres.jsonrows import by_position

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


_INSERT = (
    f"WITH m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"SELECT {by_position([(c, MESSAGE_TYPES[c]) for c in MESSAGE_COLUMNS])} FROM jsonb_array_elements(%s::jsonb) a), "
    "e AS (INSERT INTO events (message_id, type, at, data) "
    "SELECT a->>0, a->>1, (a->>2)::double precision, a->>3 FROM jsonb_array_elements(%s::jsonb) a) "
    "SELECT pg_notify(%s, %s)"
).encode()

_INSERT_ONE = (
    f"WITH m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(MESSAGE_COLUMNS))})), "
    "e AS (INSERT INTO events (message_id, type, at, data) VALUES (%s, %s, %s, %s)) "
    "SELECT pg_notify(%s, %s)"
).encode()


def insert_statement(items: Sequence[NewMessage], now: float, schema: str) -> tuple[bytes, list[Any]]:
    """The statement inserting ``items`` (none of them keyed: nothing can clash but an id) with
    their ``queued`` events, and waking this schema's idle workers.

    A lone message travels as plain parameters, a batch as two JSON arrays of row arrays.
    """
    if len(items) == 1:
        item = items[0]
        row = message_to_row(item.message, item.fingerprint)
        event = queued_event_row(item.message, now)
        return _INSERT_ONE, [*(row[c] for c in MESSAGE_COLUMNS), *event, NOTIFY_CHANNEL, schema]
    rows = [[row[c] for c in MESSAGE_COLUMNS] for row in (message_to_row(i.message, i.fingerprint) for i in items)]
    events = [queued_event_row(i.message, now) for i in items]
    return _INSERT, [json.dumps(rows), json.dumps(events), NOTIFY_CHANNEL, schema]
