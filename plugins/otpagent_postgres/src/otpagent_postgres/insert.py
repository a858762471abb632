"""Enqueueing in one statement: the messages, their ``queued`` events and the wake-up together.

The inserts of both tables sit in one data-modifying CTE that ends in ``pg_notify``: the server
parses and plans one statement (prepared after a few calls), and in autocommit the whole
enqueue is one round trip and one commit. The notification is delivered when that commit
lands, as with a separate NOTIFY.

A batch travels as one JSON array of rows per table (``INSERT ... SELECT`` from
``json_populate_recordset``), so one statement serves every batch size. A single message, the
commonest enqueue, travels as plain parameters (``INSERT ... VALUES``): unpacking a JSON record
costs the server more than the insert itself when there is only one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from otpagent.protocols import NewMessage
from otpagent.storage.rows import MESSAGE_COLUMNS, message_to_row, queued_event_row

__all__ = ["NOTIFY_CHANNEL", "insert_statement"]

NOTIFY_CHANNEL = "otpagent_enqueued"

_INSERT = (
    f"WITH m AS (INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) SELECT {', '.join(MESSAGE_COLUMNS)} "
    "FROM json_populate_recordset(NULL::messages, %s::json)), "
    "e AS (INSERT INTO events (message_id, type, at, data) SELECT * FROM "
    "json_to_recordset(%s::json) AS e(message_id text, type text, at double precision, data text)) "
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

    A lone message travels as plain parameters. A batch's rows travel as two JSON arrays,
    encoded in C by ``json.dumps``: psycopg's array dumpers walk every element in Python, which
    cost more than the whole insert. (JSON keeps floats exact: Python writes the shortest repr
    that reads back to the same double.)
    """
    if len(items) == 1:
        item = items[0]
        row = message_to_row(item.message, item.fingerprint)
        event = queued_event_row(item.message, now)
        return _INSERT_ONE, [*(row[c] for c in MESSAGE_COLUMNS), *event, NOTIFY_CHANNEL, schema]
    rows = [message_to_row(i.message, i.fingerprint) for i in items]
    events = [dict(zip(_EVENT_KEYS, queued_event_row(i.message, now), strict=True)) for i in items]
    return _INSERT, [json.dumps(rows), json.dumps(events), NOTIFY_CHANNEL, schema]


_EVENT_KEYS = ("message_id", "type", "at", "data")
