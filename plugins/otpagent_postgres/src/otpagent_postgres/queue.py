"""The queue's SQL: enqueue with idempotency keys, batched claims, conditional updates.

Each function is one unit of work for :meth:`Database.run`: it takes a connection inside an
open transaction and ``uncertain`` (True when an earlier try may already have committed, so
it must not do its work twice).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from otpagent.model import Attempt, Event, Message, Priority
from otpagent.protocols import IDEMPOTENCY_WINDOW_SECONDS, EnqueueResult, IdempotencyConflict, MessageUpdate, NewMessage
from otpagent.storage import sqlrules
from otpagent.storage.rows import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    attempt_to_row,
    event_to_row,
    message_reader,
    message_to_row,
    queued_event,
)
from otpagent_postgres.connection import Conn, Database, PgTx
from otpagent_postgres.insert import NOTIFY_CHANNEL, insert_statement

__all__ = ["claim_due", "enqueue", "enqueue_stream", "insert_attempt", "insert_event", "notify_enqueued",
           "read_applied", "renew_leases", "update_message", "update_statement"]

_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in MESSAGE_COLUMNS)})"
).encode()
_INSERT_ATTEMPT = (
    f"INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in ATTEMPT_COLUMNS)})"
).encode()
_INSERT_EVENT = sqlrules.INSERT_EVENT.replace("?", "%s").encode()
_RENEW_LEASES = sqlrules.RENEW_LEASES.replace("?", "%s").encode()
#: The claim's parts. Each walks its partial index in claim order and stops after ``limit``
#: rows, so its cost stays flat however long the backlog and however much finished history the
#: table holds. The ready rows are read one priority at a time, highest first (``READY_BY_PRIORITY``):
#: with ``priority = p`` on the index's first column, the index itself gives each priority's rows
#: in claim order (due time, then age). Asked for every priority at once, the planner may read the
#: whole backlog through a bitmap scan and sort it to keep ``limit`` rows: it did whenever the
#: table's statistics were older than the backlog (a burst enqueued before autovacuum's next
#: ANALYZE), 10 ms a claim at 20,000 queued, a third of the server's time per message.
_PRIORITIES = sorted((int(p) for p in Priority), reverse=True)


def _ready(priority: int) -> bytes:
    """The ready rows of one priority, as many as the higher priorities left room for: rows
    of a lower priority are not locked when the higher ones fill the claim."""
    taken = " + ".join(f"(SELECT count(*) FROM ready_{p})" for p in _PRIORITIES if p > priority)
    room = f"GREATEST(%(limit)s - ({taken}), 0)" if taken else "%(limit)s"
    return (f"ready_{priority} AS (SELECT seq, priority, due_at FROM messages "
            f"WHERE status IN ({sqlrules.CLAIMABLE_SQL}) AND priority = {priority} AND due_at <= %(now)s "
            f"ORDER BY due_at, seq LIMIT {room} FOR UPDATE SKIP LOCKED)").encode()


READY_BY_PRIORITY = tuple(_ready(p) for p in _PRIORITIES)
CLAIM_EXPIRED = (
    b"SELECT seq, priority, due_at FROM messages WHERE status = 'sending' AND lease_expires_at <= %(now)s "
    b"ORDER BY priority DESC, due_at, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
_READY_ROWS = b" UNION ALL ".join(b"SELECT * FROM ready_%d" % p for p in _PRIORITIES)
#: The lease, committed without waiting for the WAL flush (``synchronous_commit`` off for the
#: claim's own transaction, set inside its one statement): a claim lost to a server crash leaves
#: its messages to be claimed again, as a dead worker's are, and the outcome's commit, which does
#: wait, flushes the claim's records with its own (the WAL is written in order). The flush was
#: on the path from an enqueue to the send: 280-320 µs a statement on this project's test
#: machine against 134-154 without (docs/benchmarks.md, nineteenth round).
_LEASE_CHOSEN = (
    b"UPDATE messages SET status = 'sending', lease_owner = %(owner)s, lease_expires_at = %(until)s, "
    b"updated_at = %(now)s WHERE seq IN (SELECT seq FROM chosen) "
    b"AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off' RETURNING *"
)


def _claim(branches: Sequence[bytes], rows: bytes) -> bytes:
    """The claim: lock the candidates of every branch (other workers' locked rows skipped),
    keep the best ``limit`` by priority, then due time, then age, and lease them."""
    return (b"WITH " + b", ".join(branches) + b", chosen AS (SELECT seq FROM (" + rows + b") AS c "
            b"ORDER BY priority DESC, due_at, seq LIMIT %(limit)s) " + _LEASE_CHOSEN)


_CLAIM = _claim([*READY_BY_PRIORITY, b"expired AS (" + CLAIM_EXPIRED + b")"],
                _READY_ROWS + b" UNION ALL SELECT * FROM expired")
#: The claim without taking over expired leases (see ``StorageBackend.claim_due``'s ``reclaim``).
_CLAIM_READY_ONLY = _claim(READY_BY_PRIORITY, _READY_ROWS)


def insert_event(conn: Conn, event: Event) -> None:
    conn.execute(_INSERT_EVENT, event_to_row(event))


def notify_enqueued(conn: Conn, schema: str) -> None:
    """Wake idle workers of this schema once the transaction commits."""
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, schema))


def enqueue(conn: Conn, items: Sequence[NewMessage], now: float, uncertain: bool, schema: str) -> list[EnqueueResult]:
    """Insert the batch and wake the schema's idle workers: the items without an idempotency key
    in one statement (see :mod:`otpagent_postgres.insert`), keyed ones one by one (they may clash).
    After an uncertain commit every item goes one by one, keeping what the first try inserted."""
    results: list[EnqueueResult | None] = [None] * len(items)
    plain = [i for i, item in enumerate(items) if item.message.idempotency_key is None]
    if plain and not uncertain:
        conn.execute(*insert_statement([items[i] for i in plain], now, schema))
        for i in plain:
            results[i] = EnqueueResult(message_id=items[i].message.id, created=True)
    created = False
    for index, item in enumerate(items):
        if results[index] is None:
            results[index] = _enqueue_one(conn, item, index, now)
            created = created or results[index].created  # type: ignore[union-attr]
    if created:
        notify_enqueued(conn, schema)
    return [r for r in results if r is not None]


def enqueue_stream(db: Database, chunks: Iterable[Sequence[NewMessage]], now: float,
                   schema: str) -> list[EnqueueResult]:
    """``enqueue`` of every chunk in one pipelined transaction: each chunk's statement goes out
    as soon as the chunk arrives, without waiting for the server, so the server inserts one
    chunk while the caller validates the next; the client waits once, for the COMMIT.

    The chunks are taken once. A try lost to the connection replays the chunks it took and goes
    on with the rest; a commit whose outcome is unknown is checked one message at a time, as
    ``enqueue`` does, keeping what it inserted. When taking a chunk raises, the transaction
    rolls back and the exception propagates.
    """
    taken: list[Sequence[NewMessage]] = []
    source = iter(chunks)

    def take() -> Iterator[Sequence[NewMessage]]:
        for chunk in source:
            taken.append(chunk)
            yield chunk

    def work(conn: Conn, uncertain: bool) -> list[EnqueueResult]:
        if uncertain:
            items = [item for chunk in (*taken, *take()) for item in chunk]
            return enqueue(conn, items, now, True, schema)
        results: list[EnqueueResult] = []
        for chunk in itertools.chain(list(taken), take()):
            offset = len(results)
            try:
                results.extend(enqueue(conn, chunk, now, False, schema))
            except IdempotencyConflict as exc:
                raise IdempotencyConflict(exc.key, None if exc.index is None else exc.index + offset) from None
        return results

    return db.run(work, pipelined=True)


def _enqueue_one(conn: Conn, item: NewMessage, index: int, now: float) -> EnqueueResult:
    m = item.message
    for _ in range(3):  # at most: insert, expire a stale key, insert again
        inserted = conn.execute(_INSERT_MESSAGE + b" ON CONFLICT DO NOTHING RETURNING id",
                                message_to_row(m, item.fingerprint)).fetchone()
        if inserted is not None:
            insert_event(conn, queued_event(m, now))
            return EnqueueResult(message_id=m.id, created=True)
        if m.idempotency_key is None:
            # Only the id can clash: an earlier try of this very batch committed it.
            return EnqueueResult(message_id=m.id, created=True)
        existing = conn.execute(
            "SELECT id, fingerprint, created_at FROM messages WHERE idempotency_key = %s FOR UPDATE",
            (m.idempotency_key,),
        ).fetchone()
        if existing is None:
            if conn.execute("SELECT 1 FROM messages WHERE id = %s", (m.id,)).fetchone():
                return EnqueueResult(message_id=m.id, created=True)
            continue  # the holder of the key went away meanwhile: try again
        if existing["id"] == m.id:
            return EnqueueResult(message_id=m.id, created=True)
        if existing["created_at"] >= now - IDEMPOTENCY_WINDOW_SECONDS:
            if existing["fingerprint"] != item.fingerprint:
                raise IdempotencyConflict(m.idempotency_key, index)
            return EnqueueResult(message_id=existing["id"], created=False)
        conn.execute("UPDATE messages SET idempotency_key = NULL WHERE id = %s", (existing["id"],))
    raise RuntimeError(f"could not enqueue message {m.id} under its idempotency key")


def claim_due(conn: Conn, worker_id: str, limit: int, lease_seconds: float, now: float,
              reclaim: bool = True) -> list[Message]:
    """Lock up to ``limit`` ready rows (the highest priorities first) and ``limit`` lease-expired
    rows (skipping rows other workers hold), keep the best ``limit`` by priority, then due time,
    then age, and lease them: one statement, so it can run on its own in autocommit (one round
    trip per claim); the rows locked and not kept are free again when it ends.
    """
    params = {"now": now, "limit": limit, "owner": worker_id, "until": now + lease_seconds}
    # Plain tuples, read by position: a dict per row, then a dict of fields, cost more than the
    # message they make (see rows.message_reader).
    cursor = conn.cursor(row_factory=tuple_row).execute(_CLAIM if reclaim else _CLAIM_READY_ONLY, params)
    rows = cursor.fetchall()
    if not rows:
        return []
    columns = tuple(c.name for c in cursor.description or ())
    priority, due_at, seq = columns.index("priority"), columns.index("due_at"), columns.index("seq")
    rows.sort(key=lambda r: (-r[priority], r[due_at], r[seq]))
    read = message_reader(columns)
    return [read(r) for r in rows]


def renew_leases(conn: Conn, worker_id: str, until: float) -> int:
    """Extend every lease ``worker_id`` holds to ``until``: one statement (safe to redo)."""
    return conn.execute(_RENEW_LEASES, (until, worker_id)).rowcount


def insert_attempt(conn: Conn, attempt: Attempt, uncertain: bool) -> None:
    if uncertain and conn.execute(
        "SELECT 1 FROM delivery_reports WHERE message_id = %s AND number = %s AND channel = %s AND started_at = %s",
        (attempt.message_id, attempt.number, attempt.channel, attempt.started_at),
    ).fetchone():
        return
    conn.execute(_INSERT_ATTEMPT, attempt_to_row(attempt))


def update_message(
    conn: Conn, u: MessageUpdate, now: float, attempt: Attempt | None, events: Sequence[Event], uncertain: bool
) -> bool:
    """The conditional update, with its attempt (always) and events (only when applied): one
    statement on a first try (see :func:`_update_statement`)."""
    if uncertain:
        # The first try may have committed: it stamped ``updated_at = now`` with the new status.
        row = conn.execute("SELECT status, updated_at FROM messages WHERE id = %s", (u.message_id,)).fetchone()
        if row is not None and row["status"] == u.status.value and row["updated_at"] == now:
            return True
        if attempt is not None:
            insert_attempt(conn, attempt, uncertain)
        applied = sqlrules.message_update(PgTx(conn), u, now)
        if applied:
            for event in events:
                insert_event(conn, event)
        return applied
    statement = update_statement(u, now, attempt, events)
    if statement is None:
        if attempt is not None:
            insert_attempt(conn, attempt, uncertain)
        return False
    return read_applied(conn.cursor(row_factory=tuple_row).execute(*statement))


def read_applied(cursor: psycopg.Cursor[tuple[Any, ...]]) -> bool:
    """Whether the statement of :func:`update_statement` applied its update."""
    row = cursor.fetchone()
    return bool(row and row[0] == 1)


def update_statement(u: MessageUpdate, now: float, attempt: Attempt | None,
                      events: Sequence[Event]) -> tuple[bytes, list[Any]] | None:
    """The update, its attempt row and its events (only if the update applied) as one statement.

    One statement instead of four: the server parses, plans and answers once, which is most
    of a send's database cost on a busy server (data-modifying CTEs all run, once, in one
    snapshot; the events' INSERT reads the UPDATE's RETURNING rows).
    """
    update = sqlrules.message_update_statement(u, now)
    if update is None:
        return None
    sql, params = update
    parts = [f"applied AS ({sql.replace('?', '%s')} RETURNING 1)"]
    if attempt is not None:
        row = attempt_to_row(attempt)
        parts.append(f"attempt AS (INSERT INTO delivery_reports ({', '.join(ATTEMPT_COLUMNS)}) "
                     f"VALUES ({', '.join(['%s'] * len(ATTEMPT_COLUMNS))}))")
        params.extend(row[c] for c in ATTEMPT_COLUMNS)
    if events:
        values = ", ".join(["(%s::text, %s::text, %s::double precision, %s::text)"] * len(events))
        parts.append(f"noted AS (INSERT INTO events (message_id, type, at, data) SELECT * FROM (VALUES {values}) "
                     "AS v WHERE EXISTS (SELECT 1 FROM applied))")
        for event in events:
            params.extend(event_to_row(event))
    return f"WITH {', '.join(parts)} SELECT count(*) AS n FROM applied".encode(), params

