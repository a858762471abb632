"""A group of outcomes in one statement: the updates, their attempts and their events.

When a group commit holds several outcomes (:mod:`otpagent_postgres.groupcommit`), one
statement writes them all: the rows travel as JSON arrays (encoded in C), the conditional
``UPDATE ... FROM`` applies each update where its own conditions hold and returns which did,
every attempt is inserted, and only the applied updates' events. One statement instead of one
per outcome: the server plans and runs it once, and the client builds and reads it once.

It is the same rule as :func:`otpagent.storage.sqlrules.message_update_statement`, per row: a
field left ``None`` keeps the stored value (``COALESCE``), ``add_cost`` adds, the lease is
released unless ``keep_lease``, and the conditions (expected statuses, owner, provider id)
hold only when given. A group that names one message twice, or holds an update whose
conditions can never hold, is not merged (each then runs its own statement, in order).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import psycopg

from otpagent.model import Attempt
from otpagent.protocols import MessageUpdate, MessageWrite
from otpagent.storage.rows import ATTEMPT_COLUMNS, attempt_to_row

__all__ = ["OUTCOMES", "OutcomeMerge"]

_STATEMENT = (
    "WITH v AS (SELECT * FROM json_to_recordset(%s::json) AS v(k integer, id text, status text, "
    "  at double precision, due_at double precision, route_index integer, channel_attempts integer, "
    "  attempt_count integer, channel text, provider_message_id text, last_error text, route text, "
    "  add_cost double precision, clear_secret boolean, keep_lease boolean, statuses text, owner text, "
    "  expected_pid text)), "
    "applied AS (UPDATE messages m SET status = v.status, updated_at = v.at, due_at = COALESCE(v.due_at, m.due_at), "
    "  route_index = COALESCE(v.route_index, m.route_index), "
    "  channel_attempts = COALESCE(v.channel_attempts, m.channel_attempts), "
    "  attempt_count = COALESCE(v.attempt_count, m.attempt_count), channel = COALESCE(v.channel, m.channel), "
    "  provider_message_id = COALESCE(v.provider_message_id, m.provider_message_id), "
    "  last_error = COALESCE(v.last_error, m.last_error), route = COALESCE(v.route, m.route), "
    "  cost = m.cost + COALESCE(v.add_cost, 0), secret = CASE WHEN v.clear_secret THEN NULL ELSE m.secret END, "
    "  lease_owner = CASE WHEN v.keep_lease THEN m.lease_owner END, "
    "  lease_expires_at = CASE WHEN v.keep_lease THEN m.lease_expires_at END "
    # The ANY(ARRAY(...)) lets the planner probe the id index: on the join alone it expects
    # 100 rows from the function and would scan the whole table.
    "  FROM v WHERE m.id = ANY(ARRAY(SELECT id FROM v)) AND m.id = v.id "
    "  AND (v.statuses IS NULL OR m.status = ANY(string_to_array(v.statuses, ','))) "
    "  AND (v.owner IS NULL OR m.lease_owner = v.owner) "
    "  AND (v.expected_pid IS NULL OR m.provider_message_id = v.expected_pid) RETURNING v.k), "
    f"attempts AS (INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) SELECT {', '.join(ATTEMPT_COLUMNS)} "
    "  FROM json_populate_recordset(NULL::delivery_reports, %s::json)), "
    # A filter, not a join, so the events keep their order (their ids order a message's history).
    # An event's data travels as a JSON object inside the array (not a string encoded twice);
    # as ``json`` (not ``jsonb``) it reads back as the very text it was sent as.
    "noted AS (INSERT INTO events (message_id, type, at, data) SELECT e.message_id, e.type, e.at, e.data::text "
    "  FROM json_to_recordset(%s::json) AS e(k integer, message_id text, type text, at double precision, data json) "
    "  WHERE e.k = ANY(ARRAY(SELECT k FROM applied))) "
    "SELECT k FROM applied"
).encode()


class OutcomeMerge:
    """Merges outcomes into one statement for :class:`~otpagent_postgres.groupcommit.GroupCommit`."""

    def statement(self, outcomes: Sequence[MessageWrite]) -> tuple[bytes, list[Any]] | None:
        """The statement writing every outcome, or None when they cannot share one."""
        ids = {o.update.message_id for o in outcomes}
        if len(ids) < len(outcomes) or any(o.update.expected_statuses is not None and not o.update.expected_statuses
                                           for o in outcomes):
            return None
        updates: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for k, o in enumerate(outcomes):
            updates.append(_update_row(k, o.update, o.now))
            if o.attempt is not None:
                attempts.append(_attempt_row(o.attempt))
            for e in o.events:
                event: dict[str, Any] = {"k": k, "message_id": e.message_id, "type": e.type, "at": e.at}
                if e.data:
                    event["data"] = e.data if type(e.data) is dict else dict(e.data)
                events.append(event)
        return _STATEMENT, [json.dumps(updates), json.dumps(attempts), json.dumps(events)]

    @staticmethod
    def read(cursor: psycopg.Cursor[tuple[Any, ...]], count: int) -> list[bool]:
        """Whether each outcome's update applied (the statement returns the applied ones)."""
        applied = {row[0] for row in cursor.fetchall()}
        return [k in applied for k in range(count)]


#: (record key, MessageUpdate field) of the fields written as they are when given.
_PLAIN = (
    ("due_at", "due_at"), ("route_index", "route_index"), ("channel_attempts", "channel_attempts"),
    ("attempt_count", "attempt_count"), ("channel", "channel"), ("provider_message_id", "provider_message_id"),
    ("last_error", "last_error"), ("owner", "expected_owner"), ("expected_pid", "expected_provider_message_id"),
)


def _update_row(k: int, u: MessageUpdate, now: float) -> dict[str, Any]:
    """The update as a JSON record. A field that is ``None`` (or a flag that is off, or no
    cost) is left out: ``json_to_recordset`` reads a missing key as NULL, which the statement
    treats as "keep", and every key left out is one the client need not encode nor the server
    parse (about half of them, for the usual outcome)."""
    row: dict[str, Any] = {"k": k, "id": u.message_id, "status": u.status.value, "at": now}
    for key, name in _PLAIN:
        value = getattr(u, name)
        if value is not None:
            row[key] = value
    if u.route is not None:
        row["route"] = _route_text(tuple(u.route))
    if u.add_cost:
        row["add_cost"] = float(u.add_cost)
    if u.clear_secret:
        row["clear_secret"] = True
    if u.keep_lease:
        row["keep_lease"] = True
    if u.expected_statuses is not None:
        row["statuses"] = ",".join(sorted(s.value for s in u.expected_statuses))
    return row


@functools.lru_cache(maxsize=1024)
def _route_text(route: tuple[str, ...]) -> str:
    """A route as stored (a JSON list): a fleet has a handful of distinct routes."""
    return json.dumps(list(route))


def _attempt_row(a: Attempt) -> dict[str, Any]:
    """``attempt_to_row`` without its ``None`` fields (NULL when missing, as in the update)."""
    return {key: value for key, value in attempt_to_row(a).items() if value is not None}


#: The one merger every storage shares (the group commit merges writes with the same merger).
OUTCOMES = OutcomeMerge()
