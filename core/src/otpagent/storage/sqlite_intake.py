"""A lone message's enqueue on SQLite: one row in ``intake``, moved into ``messages`` later.

A commit writes every page it touched to the WAL, one frame each, and syncs them. Queueing a
message wrote its row with three index entries, its ``queued`` event with two, and
``sqlite_sequence``: eight pages or more for one message, where a job queue's insert (huey's)
writes two. A lone enqueue (``send_message``, one request, the commonest kind) now writes one
row of JSON into ``intake``, a table with no index but its primary key, and returns when that
commit is durable: what a worker, a crash or another process finds afterwards is the same.

The row becomes a message, with its ``queued`` event at the enqueue's time, when :func:`absorb`
moves it, oldest first, in some write transaction that needs it:

- every claim, in its own transaction, before it picks what is due (so a worker sees a new
  message at the moment it would have seen it in ``messages``; at most :data:`ABSORB_BATCH`
  rows a claim, so a long backlog left by a process with no workers is moved over several);
- every read of messages or events (the backend's reads, the webhook outbox's pulls) first
  moves whatever is pending, so nothing outside this module ever sees ``intake``: a message is
  found by ``get_message`` the moment ``send_message`` returns, from any process;
- an update that matched no row (a cancel of a message not moved yet) moves what is pending
  and tries again.

An issued code's message takes the same row, written by the transaction that stores the code
(``SqliteStorage.issue_otp``): with the rate-limit rows, the code and its index entries, the
message's row, five index entries and event made an issue's commit the dearest write of an OTP
request, and the move happens in the delivering process, not the one answering the request. Its
sealed code rides in the row until it is moved; the redaction of expired codes moves what is
pending first, so a code queued while no worker runs is cleared on time too.

Rows keep their values by column name, so a migration that adds a column to ``messages`` moves
rows written before it with that column's default; a value equal to its column's default (most
of a new message's 32 columns are NULL or 0) is left out, and comes back as that default: about
330 bytes a row instead of 750. Batches and idempotency-keyed messages are written straight to
``messages`` as before: a batch shares its commit already, and a key must be checked against
``messages``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from otpagent import jsontext
from otpagent.logs import get_logger
from otpagent.model import Message
from otpagent.protocols import NewMessage
from otpagent.storage import sqlrules
from otpagent.storage.rows import MESSAGE_COLUMNS, message_values, queued_event_row

__all__ = [
    "ABSORB_BATCH", "INSERT_INTAKE", "NON_NULL_DEFAULTS", "absorb", "absorb_all", "goes_to_intake", "has_pending",
    "holds", "intake_row",
]

INSERT_INTAKE = "INSERT INTO intake (row) VALUES (?)"
#: Rows moved by one :func:`absorb` (a claim's share of a backlog; 16 µs of CPU a row).
ABSORB_BATCH = 1000
#: The key of the ``queued`` event's (type, at, data) in a row; never a column name.
_EVENT = "_event"
_COLUMNS = frozenset(MESSAGE_COLUMNS)
#: The non-NULL defaults of ``messages`` columns: a row leaves out a value equal to its
#: column's default (these, or NULL for a nullable column without one), and the insert that moves
#: the row stores the same value. ``tests/core/test_sqlite_intake.py`` checks both against the schema.
NON_NULL_DEFAULTS: dict[str, Any] = {"route": "[]", "route_index": 0, "channel_attempts": 0, "attempt_count": 0,
                                     "cost": 0}

log = get_logger("otpagent.storage")


def holds(message: Message) -> bool:
    """Whether a row may hold ``message``: nothing about it must be checked against
    ``messages`` first (an idempotency key must)."""
    return message.idempotency_key is None


def goes_to_intake(items: Sequence[NewMessage]) -> bool:
    """A lone message without an idempotency key or a code: what ``intake`` takes from an
    enqueue (an issued code's message comes with its code, from ``issue_otp``)."""
    return len(items) == 1 and holds(items[0].message) and items[0].message.secret is None


def intake_row(item: NewMessage, now: float) -> str:
    """The JSON of ``intake.row``: the message's columns by name, but those at their default,
    and its ``queued`` event."""
    # None is left out: a NOT NULL column never holds it, a nullable one defaults to it.
    row: dict[str, Any] = {column: value for column, value in
                           zip(MESSAGE_COLUMNS, message_values(item.message, item.fingerprint), strict=True)
                           if value is not None}
    for column, default in NON_NULL_DEFAULTS.items():  # no column is a boolean: == is what SQLite stores
        if row.get(column) == default:
            del row[column]
    _, event_type, at, data = queued_event_row(item.message, now)
    row[_EVENT] = [event_type, at, data]
    return jsontext.dumps(row)


@functools.lru_cache(maxsize=256)
def _insert(columns: tuple[str, ...]) -> str:
    """``INSERT OR IGNORE``: a row whose id is stored already (the same message enqueued twice)
    is skipped, not an error that would fail the claim moving it, and every claim after. (Rows
    name the columns a message sets, so a few shapes recur: the cache is bounded all the same.)"""
    return f"INSERT OR IGNORE INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def has_pending(conn: sqlite3.Connection) -> bool:
    """Whether ``intake`` holds a row (a read on the primary key)."""
    return conn.execute("SELECT 1 FROM intake LIMIT 1").fetchone() is not None


def absorb(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """Move the oldest ``limit`` (:data:`ABSORB_BATCH`) intake rows into ``messages`` and
    ``events``, in ``conn``'s write transaction (which holds the database's write lock, so
    nothing is added meanwhile); returns how many."""
    rows = conn.execute("SELECT seq, row FROM intake ORDER BY seq LIMIT ?",
                        (ABSORB_BATCH if limit is None else limit,)).fetchall()
    if not rows:
        return 0
    events: list[tuple[Any, ...]] = []
    for row in rows:
        values: dict[str, Any] = jsontext.loads(row[1])
        event_type, at, data = values.pop(_EVENT)
        columns = tuple(values)
        if not _COLUMNS.issuperset(columns):
            raise RuntimeError(f"intake row {row[0]} names unknown message columns "
                               f"{sorted(set(columns) - _COLUMNS)}: written by a newer otpagent?")
        if conn.execute(_insert(columns), tuple(values.values())).rowcount:
            events.append((values["id"], event_type, at, data))
        else:  # never wedge every claim on one row: a message enqueued twice stays the first
            log.warning("intake_row_dropped", message_id=values.get("id"),
                        reason="a message with this id is stored already")
    conn.executemany(sqlrules.INSERT_EVENT, events)
    conn.execute("DELETE FROM intake WHERE seq <= ?", (rows[-1][0],))
    return len(rows)


def absorb_all(conn: sqlite3.Connection) -> int:
    """Move every intake row, in ``conn``'s write transaction; returns how many. Bounded: the
    transaction holds the write lock, so the table only shrinks."""
    moved = 0
    while (n := absorb(conn)) == ABSORB_BATCH:
        moved += n
    return moved + n
