"""A group of outcomes in one statement: the updates, their attempts and their events.

When a group commit holds several outcomes (:mod:`otpagent_postgres.groupcommit`), one
statement writes them all: the rows travel as JSON (encoded in C; an update or an attempt as an
array of its fields, with no keys to encode or parse), the conditional
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
from collections.abc import Sequence
from typing import Any

import psycopg

from otpagent.jsontext import dumps
from otpagent.model import Attempt
from otpagent.protocols import MessageUpdate, MessageWrite
from otpagent.storage.rows import ATTEMPT_COLUMNS
from otpagent_postgres.jsonrows import by_position

__all__ = ["OUTCOMES", "OutcomeMerge"]

#: The update record's fields, in the order each travels in its JSON array.
_UPDATE_FIELDS = (
    ("k", "integer"), ("id", "text"), ("status", "text"), ("at", "double precision"),
    ("due_at", "double precision"), ("route_index", "integer"), ("channel_attempts", "integer"),
    ("attempt_count", "integer"), ("channel", "text"), ("provider_message_id", "text"), ("last_error", "text"),
    ("route", "text"), ("add_cost", "double precision"), ("clear_secret", "boolean"), ("keep_lease", "boolean"),
    ("statuses", "text"), ("owner", "text"), ("expected_pid", "text"),
)
#: The attempt record's fields, in the order each travels in its JSON array.
_ATTEMPT_FIELDS = (
    ("message_id", "text"), ("number", "integer"), ("channel", "text"), ("outcome", "text"),
    ("started_at", "double precision"), ("finished_at", "double precision"), ("provider_message_id", "text"),
    ("error_code", "text"), ("error_message", "text"), ("cost", "double precision"),
    ("delivery_status", "text"), ("status_updated_at", "double precision"),
)


_STATEMENT = (
    # Updates and attempts travel as arrays of their values (otpagent_postgres.jsonrows).
    f"WITH v AS (SELECT {by_position(_UPDATE_FIELDS)} FROM jsonb_array_elements(%s::jsonb) a), "
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
    f"attempts AS (INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) "
    f"  SELECT {by_position(_ATTEMPT_FIELDS)} FROM jsonb_array_elements(%s::jsonb) a), "
    # An event travels as [k, type, message id, at] (the id and time null when they are the
    # update's, as they mostly are), its data beside it in a second array that stays ``json``
    # (not ``jsonb``): each element is read as the very text it was sent as, and stored so.
    # Ordered by position, so the events keep their order (their ids order a message's history).
    "noted AS (INSERT INTO events (message_id, type, at, data) "
    "  SELECT COALESCE(e.a->>2, v.id), e.a->>1, COALESCE((e.a->>3)::double precision, v.at), "
    "  NULLIF(d.x::text, 'null') "
    "  FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(a, n) "
    "  JOIN json_array_elements(%s::json) WITH ORDINALITY AS d(x, n) ON d.n = e.n "
    "  JOIN v ON v.k = (e.a->>0)::integer "
    "  WHERE v.k = ANY(ARRAY(SELECT k FROM applied)) ORDER BY e.n) "
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
        updates: list[list[Any]] = []
        attempts: list[list[Any]] = []
        events: list[tuple[Any, ...]] = []
        data: list[dict[str, Any] | None] = []
        for k, o in enumerate(outcomes):
            u, now = o.update, o.now
            updates.append(_update_row(k, u, now))
            if o.attempt is not None:
                attempts.append(_attempt_row(o.attempt))
            for e in o.events:
                events.append((k, e.type, None if e.message_id == u.message_id else e.message_id,
                               None if e.at == now else e.at))
                data.append((e.data if type(e.data) is dict else dict(e.data)) if e.data else None)
        return _STATEMENT, [dumps(updates), dumps(attempts), dumps(events), dumps(data)]

    @staticmethod
    def read(cursor: psycopg.Cursor[tuple[Any, ...]], count: int) -> list[bool]:
        """Whether each outcome's update applied (the statement returns the applied ones)."""
        applied = {row[0] for row in cursor.fetchall()}
        return [k in applied for k in range(count)]


def _update_row(k: int, u: MessageUpdate, now: float) -> list[Any]:
    """The update as a JSON array in ``_UPDATE_FIELDS`` order: ``None`` (null) keeps the stored
    value, as does a flag that is off (false) or no cost (null)."""
    return [
        k, u.message_id, u.status.value, now, u.due_at, u.route_index, u.channel_attempts, u.attempt_count,
        u.channel, u.provider_message_id, u.last_error, None if u.route is None else _route_text(tuple(u.route)),
        float(u.add_cost) if u.add_cost else None, u.clear_secret or None, u.keep_lease or None,
        None if u.expected_statuses is None else ",".join(sorted(s.value for s in u.expected_statuses)),
        u.expected_owner, u.expected_provider_message_id,
    ]


@functools.lru_cache(maxsize=1024)
def _route_text(route: tuple[str, ...]) -> str:
    """A route as stored (a JSON list): a fleet has a handful of distinct routes."""
    return dumps(list(route))


def _attempt_row(a: Attempt) -> list[Any]:
    """The attempt as a JSON array in ``_ATTEMPT_FIELDS`` order."""
    return [
        a.message_id, a.number, a.channel, a.outcome.value, a.started_at, a.finished_at, a.provider_message_id,
        a.error_code, a.error_message, a.cost, a.delivery_status.value if a.delivery_status else None,
        a.status_updated_at,
    ]


#: The one merger every storage shares (the group commit merges writes with the same merger).
OUTCOMES = OutcomeMerge()
