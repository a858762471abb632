"""The SQLite schema and its migrations (``schema_version`` records what has been applied)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["SCHEMA_VERSION", "migrate"]

_MIGRATIONS: list[str] = [
    # 1: the queue, attempts (delivery_reports), OTPs, events, shared state.
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        message_type TEXT NOT NULL,
        priority INTEGER NOT NULL,
        body TEXT NOT NULL,
        subject TEXT,
        phone_number TEXT,
        email TEXT,
        user_id TEXT,
        idempotency_key TEXT,
        fingerprint TEXT,
        channels TEXT,
        preferred_channel TEXT,
        max_retries INTEGER,
        callback_url TEXT,
        metadata TEXT,
        secret TEXT,
        expires_at REAL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        due_at REAL NOT NULL,
        route TEXT NOT NULL DEFAULT '[]',
        route_index INTEGER NOT NULL DEFAULT 0,
        channel_attempts INTEGER NOT NULL DEFAULT 0,
        attempt_count INTEGER NOT NULL DEFAULT 0,
        channel TEXT,
        provider_message_id TEXT,
        last_error TEXT,
        cost REAL NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at REAL
    );
    CREATE UNIQUE INDEX messages_idempotency ON messages(idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX messages_ready ON messages(priority DESC, due_at, seq)
        WHERE status IN ('queued', 'scheduled', 'retrying');
    CREATE INDEX messages_leased ON messages(lease_expires_at) WHERE status = 'sending';
    CREATE INDEX messages_status ON messages(status);
    CREATE INDEX messages_updated ON messages(updated_at);
    CREATE INDEX messages_secrets ON messages(expires_at) WHERE secret IS NOT NULL;
    CREATE TABLE delivery_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        channel TEXT NOT NULL,
        outcome TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        provider_message_id TEXT,
        error_code TEXT,
        error_message TEXT,
        cost REAL NOT NULL DEFAULT 0,
        delivery_status TEXT,
        status_updated_at REAL
    );
    CREATE INDEX delivery_reports_message ON delivery_reports(message_id);
    CREATE INDEX delivery_reports_provider ON delivery_reports(provider_message_id)
        WHERE provider_message_id IS NOT NULL;
    CREATE INDEX delivery_reports_channel_time ON delivery_reports(channel, finished_at);
    CREATE TABLE otps (
        id TEXT PRIMARY KEY,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL,
        code_hash BLOB NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        message_id TEXT,
        consumed_at REAL,
        invalidated_at REAL
    );
    CREATE INDEX otps_recipient ON otps(recipient, purpose, created_at);
    CREATE TABLE otp_failures (
        recipient TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        first_failure_at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        data TEXT
    );
    CREATE INDEX events_message ON events(message_id);
    CREATE INDEX events_at ON events(at);
    CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat REAL NOT NULL);
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE seen_events (source TEXT NOT NULL, event_id TEXT NOT NULL, seen_at REAL NOT NULL,
                              PRIMARY KEY (source, event_id));
    """,
    # 2: per-channel statistics read a recent window of attempts, not the whole history.
    """
    CREATE INDEX delivery_reports_finished ON delivery_reports(finished_at);
    """,
    # 3: fleet activity (retries, fallbacks, failures... over a window) counts events of a few
    # types by time; this index answers it from the index alone, however long the history.
    """
    CREATE INDEX events_type_at ON events(type, at);
    """,
    # 4: wrong guesses count against the live code, never against the recipient (a stranger
    # could lock a number out by guessing). Codes outstanding at the upgrade start from zero.
    """
    ALTER TABLE otps ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    DROP TABLE otp_failures;
    """,
    # 5: the W3C trace context of the enqueue (JSON: traceparent, tracestate), so the worker that
    # claims a message continues its trace (otpagent.tracing). NULL when tracing is off.
    """
    ALTER TABLE messages ADD COLUMN trace_context TEXT;
    """,
    # 6: fewer index pages per commit. Every page an insert touches is a WAL frame the commit
    # writes and syncs, and SQLite enqueues one message per commit when called one at a time.
    # ``events(at)`` served only webhook replays (an operator's command, which may scan) and
    # the cleanup of events without a message (which ``events_message`` finds as NULL), and
    # ``events(type, at)`` gave every ``attempt`` event (one per send, never counted) an entry
    # only the activity counts read. Partial on ``type <> 'attempt'``, a condition SQLite checks
    # without a lookup, and which the counting queries state (``sqlreads``) so it is used.
    """
    CREATE INDEX events_activity_at ON events(type, at) WHERE type <> 'attempt';
    DROP INDEX events_type_at;
    DROP INDEX events_at;
    """,
    # 7: one index where two moved on every write. ``messages(status)`` and ``messages(updated_at)``
    # both took an entry per enqueue and moved it on every status change, each a WAL frame of
    # every commit; ``(status, updated_at)`` answers all they answered: the counts by status
    # (from the index alone), the cleanup of finished messages (a range per finished status),
    # and the most recently updated messages (the newest of each status, merged: see
    # ``SqliteStorage.recent_messages``). (On a large database this builds the index once, at
    # the first start after the upgrade.)
    """
    CREATE INDEX IF NOT EXISTS messages_status_updated ON messages(status, updated_at);
    DROP INDEX IF EXISTS messages_status;
    DROP INDEX IF EXISTS messages_updated;
    """,
    # 8: a lone enqueue writes one row here, no index but the rowid, instead of the message row
    # with its index entries and its event (a page each, every one a WAL frame of the commit);
    # a claim or a read moves it into ``messages`` (``otpagent.storage.sqlite_intake``).
    """
    CREATE TABLE intake (seq INTEGER PRIMARY KEY, row TEXT NOT NULL);
    """,
]

SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: sqlite3.Connection, begin: Callable[[sqlite3.Connection], None] | None = None, *,
            up_to: int = SCHEMA_VERSION) -> int:
    """Apply pending migrations in one immediate transaction; returns the schema version.

    Safe when several processes open a new database at once: the first takes the write lock,
    the others wait for it and then find nothing left to do. ``up_to`` stops at an earlier
    version: a database as an older otpagent left it (the upgrade tests build theirs so).
    """
    if begin is None:
        conn.execute("BEGIN IMMEDIATE")
    else:
        begin(conn)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {current} is newer than this otpagent ({SCHEMA_VERSION}); upgrade otpagent"
            )
        for version in range(current + 1, up_to + 1):
            for statement in _MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(current, up_to)
