"""The PostgreSQL schema and its migrations, applied once per schema under an advisory lock.

Several workers may start at the same moment against an empty database: each runs
:func:`migrate` in one transaction that first takes a transaction-scoped advisory lock keyed by
the schema name, so exactly one applies the DDL and the others then find nothing left to do.
``schema_version`` records each applied version.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

__all__ = ["SCHEMA_VERSION", "SchemaTooNew", "migrate"]


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer otpagent-postgres than this one."""

# Migrations are history: this text stays as first applied (the statuses are
# ``otpagent.protocols.FINISHED_STATUSES``; cleanup queries use ``sqlrules.FINISHED_SQL``).
_FINISHED = "'sent', 'delivered', 'read', 'undelivered', 'failed', 'cancelled', 'expired'"

# Timestamps are POSIX seconds in double precision, as in SQLite, so the row conversions in
# ``otpagent.storage.rows`` serve both backends unchanged.
_MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE messages (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        message_type TEXT NOT NULL,
        priority SMALLINT NOT NULL,
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
        expires_at DOUBLE PRECISION,
        status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        due_at DOUBLE PRECISION NOT NULL,
        route TEXT NOT NULL DEFAULT '[]',
        route_index INTEGER NOT NULL DEFAULT 0,
        channel_attempts INTEGER NOT NULL DEFAULT 0,
        attempt_count INTEGER NOT NULL DEFAULT 0,
        channel TEXT,
        provider_message_id TEXT,
        last_error TEXT,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX messages_ready ON messages (priority DESC, due_at, seq)
        WHERE status IN ('queued', 'scheduled', 'retrying');
    CREATE INDEX messages_leased ON messages (lease_expires_at) WHERE status = 'sending';
    CREATE INDEX messages_finished ON messages (updated_at) WHERE status IN ({_FINISHED});
    CREATE INDEX messages_updated ON messages (updated_at DESC, seq DESC);
    CREATE INDEX messages_secrets ON messages (expires_at) WHERE secret IS NOT NULL;
    CREATE TABLE delivery_reports (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        channel TEXT NOT NULL,
        outcome TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL,
        provider_message_id TEXT,
        error_code TEXT,
        error_message TEXT,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        delivery_status TEXT,
        status_updated_at DOUBLE PRECISION
    );
    CREATE INDEX delivery_reports_message ON delivery_reports (message_id);
    CREATE INDEX delivery_reports_provider ON delivery_reports (provider_message_id)
        WHERE provider_message_id IS NOT NULL;
    CREATE INDEX delivery_reports_channel ON delivery_reports (channel, id DESC);
    CREATE TABLE otps (
        id TEXT PRIMARY KEY,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL,
        code_hash BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        message_id TEXT,
        consumed_at DOUBLE PRECISION,
        invalidated_at DOUBLE PRECISION
    );
    CREATE INDEX otps_recipient ON otps (recipient, purpose, created_at);
    CREATE INDEX otps_expires ON otps (expires_at);
    CREATE TABLE otp_failures (
        recipient TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        first_failure_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT,
        type TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        data TEXT
    );
    CREATE INDEX events_message ON events (message_id);
    CREATE INDEX events_orphan_at ON events (at) WHERE message_id IS NULL;
    CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat DOUBLE PRECISION NOT NULL);
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE seen_events (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, event_id)
    );
    CREATE INDEX seen_events_at ON seen_events (seen_at);
    """,
    # 2: the webhook outbox. ``events.xid`` is the id of the transaction that wrote the event:
    # ids are taken at insert time and transactions commit out of order, so the outbox's cursor
    # is a commit horizon over ``(xid, id)``, not an id (see ``outbox.py``). Existing rows get
    # the migrating transaction's id (ADD COLUMN with a volatile default rewrites the table once).
    """
    ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX events_xid ON events (xid, id);
    CREATE TABLE webhook_cursors (
        endpoint TEXT PRIMARY KEY,
        xid xid8 NOT NULL,
        event_id BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE webhook_deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        endpoint TEXT NOT NULL,
        event_id BIGINT,
        webhook_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        cycle_started_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        delivered_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint, next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (endpoint, id);
    CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
        WHERE status IN ('delivered', 'dead');
    """,
    # 3: per-channel statistics read a recent window of attempts, not the whole history.
    """
    CREATE INDEX delivery_reports_finished ON delivery_reports (finished_at);
    """,
    # 4: fleet activity (retries, fallbacks, failures... over a window) counts events of a few
    # types by time. (On a large existing table, build it first with CREATE INDEX CONCURRENTLY
    # under this name to avoid blocking writes while it builds; the migration then skips it.)
    """
    CREATE INDEX IF NOT EXISTS events_type_at ON events (type, at);
    """,
    # 5: wrong guesses count against the live code, never against the recipient (a stranger
    # could lock a number out by guessing). Codes outstanding at the upgrade start from zero.
    """
    ALTER TABLE otps ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    DROP TABLE otp_failures;
    """,
    # 6: the W3C trace context of the enqueue (JSON: traceparent, tracestate), so the worker that
    # claims a message continues its trace (otpagent.tracing). NULL when tracing is off; adding a
    # nullable column without a default touches no row.
    """
    ALTER TABLE messages ADD COLUMN trace_context TEXT;
    """,
    # 7: the (type, at) index of migration 4 serves only the activity counts, which read the types
    # of ``otpagent.protocols.ACTIVITY_EVENT_TYPES``; every ``attempt`` event (one per send, the
    # commonest kind) paid an index entry nobody reads. Partial, it is written for the counted
    # types only. The list is history like the rest: a type added to ACTIVITY_EVENT_TYPES needs a
    # migration widening it (tests/postgres/test_postgres_behaviour.py checks the two agree).
    # (On a large table, build it first with CREATE INDEX CONCURRENTLY under this name.)
    """
    CREATE INDEX IF NOT EXISTS events_activity_at ON events (type, at) WHERE type IN ('queued', 'scheduled',
        'sent', 'delivered', 'read', 'undelivered', 'retrying', 'fallback', 'failed', 'expired', 'cancelled');
    DROP INDEX IF EXISTS events_type_at;
    """,
]

SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(conn: psycopg.Connection[Any], schema: str) -> int:
    """Create ``schema`` if needed and apply pending migrations; returns the schema version.

    Runs in one transaction under ``pg_advisory_xact_lock``: concurrent starters queue on the
    lock, and all but the first find the version already recorded.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"otpagent-migrate:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cur = conn.cursor(row_factory=tuple_row)
        row = cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {current} is newer than this otpagent-postgres ({SCHEMA_VERSION}); "
                "upgrade otpagent-postgres"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return SCHEMA_VERSION
