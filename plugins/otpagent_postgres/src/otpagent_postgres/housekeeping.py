"""Shared state (key/values), spend per day, and batched cleanup (the GCRA buckets: ``buckets``).

Cleanup deletes in batches of ``batch_size`` rows, each batch its own short transaction, so
it never holds locks on the hot tables for long while workers keep claiming.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from otpagent.storage import sqlrules
from otpagent_postgres.connection import Conn

__all__ = ["cleanup", "costs_by_day", "put_state", "states_with_prefix", "update_state"]


def put_state(conn: Conn, key: str, value: str, only_if_absent: bool) -> str:
    row = conn.execute(
        "INSERT INTO state AS s (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
        "SET value = CASE WHEN %s THEN s.value ELSE excluded.value END RETURNING value",
        (key, value, only_if_absent),
    ).fetchone()
    assert row is not None
    return str(row["value"])


def update_state(conn: Conn, key: str, update: Callable[[str | None], str]) -> str:
    """Read-modify-write under the row lock; a concurrent first insert makes us read again."""
    for _ in range(3):
        row = conn.execute("SELECT value FROM state WHERE key = %s FOR UPDATE", (key,)).fetchone()
        if row is not None:
            value = update(str(row["value"]))
            conn.execute("UPDATE state SET value = %s WHERE key = %s", (value, key))
            return value
        value = update(None)
        if conn.execute("INSERT INTO state (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                        (key, value)).fetchone():
            return value
    raise RuntimeError(f"could not update shared state {key!r}")


def states_with_prefix(conn: Conn, prefix: str) -> dict[str, str]:
    rows = conn.execute("SELECT key, value FROM state WHERE starts_with(key, %s)", (prefix,)).fetchall()
    return {str(r["key"]): str(r["value"]) for r in rows}


def costs_by_day(conn: Conn, since: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in conn.execute(
        "SELECT channel, to_char(to_timestamp(finished_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, "
        "COALESCE(SUM(cost), 0) AS cost FROM delivery_reports WHERE finished_at >= %s GROUP BY 1, 2", (since,)
    ).fetchall():
        out.setdefault(str(r["channel"]), {})[str(r["day"])] = float(r["cost"])
    return out


Run = Callable[[Callable[[Conn, bool], tuple[int, ...]]], tuple[int, ...]]


def cleanup(run: Run, older_than: float, now: float, batch_size: int) -> Mapping[str, int]:
    """Delete finished old messages (with attempts and events), then old OTPs, event ids and
    buckets, ``batch_size`` rows per transaction."""
    counts = {"delivery_reports": 0, "events": 0, "messages": 0, "otps": 0, "seen_events": 0}

    def messages_batch(conn: Conn, _uncertain: bool) -> tuple[int, ...]:
        row = conn.execute(
            f"WITH doomed AS (SELECT id FROM messages WHERE status IN ({sqlrules.FINISHED_SQL}) AND updated_at < %(t)s "
            "  ORDER BY updated_at LIMIT %(n)s FOR UPDATE SKIP LOCKED), "
            "a AS (DELETE FROM delivery_reports WHERE message_id IN (SELECT id FROM doomed) RETURNING 1), "
            "e AS (DELETE FROM events WHERE message_id IN (SELECT id FROM doomed) RETURNING 1), "
            "m AS (DELETE FROM messages WHERE id IN (SELECT id FROM doomed) RETURNING 1) "
            "SELECT (SELECT COUNT(*) FROM a) AS a, (SELECT COUNT(*) FROM e) AS e, (SELECT COUNT(*) FROM m) AS m",
            {"t": older_than, "n": batch_size},
        ).fetchone()
        assert row is not None
        return row["a"], row["e"], row["m"]

    for _ in range(1_000_000):
        a, e, m = run(messages_batch)
        counts["delivery_reports"] += a
        counts["events"] += e
        counts["messages"] += m
        if m < batch_size:
            break
    for key, sql in (
        ("events", "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE message_id IS NULL "
                   "AND at < %(t)s LIMIT %(n)s)"),
        ("otps", "DELETE FROM otps WHERE id IN (SELECT id FROM otps WHERE expires_at < %(t)s LIMIT %(n)s)"),
        ("seen_events", "DELETE FROM seen_events WHERE (source, event_id) IN (SELECT source, event_id "
                        "FROM seen_events WHERE seen_at < %(t)s LIMIT %(n)s)"),
        (None, "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE tat < %(stale)s LIMIT %(n)s)"),
    ):
        def batch(conn: Conn, _uncertain: bool, _sql: str = sql) -> tuple[int, ...]:
            params = {"t": older_than, "n": batch_size, "stale": now - 3600.0}
            return (conn.execute(_sql.encode(), params).rowcount,)

        for _ in range(1_000_000):
            (deleted,) = run(batch)
            if key is not None:
                counts[key] += deleted
            if deleted < batch_size:
                break
    return counts
