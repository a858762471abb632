"""Shared state (GCRA buckets, key/values, seen event ids), stats, and batched cleanup.

Cleanup deletes in batches of ``batch_size`` rows, each batch its own short transaction, so
it never holds locks on the hot tables for long while workers keep claiming.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from otpagent.protocols import STATS_WINDOW_SECONDS, ChannelStats, StorageStats
from otpagent.storage import sqlrules
from otpagent.storage.rows import percentile
from otpagent_postgres.connection import Conn, PgTx
from otpagent_postgres.schema import FINISHED_STATUSES

__all__ = ["acquire", "cleanup", "costs_by_day", "put_state", "remember_event_id", "states_with_prefix", "stats",
           "update_state"]

_CLAIMABLE = ["queued", "scheduled", "retrying"]


def acquire(conn: Conn, key: str, interval: float, burst: int, now: float, cost: int,
            max_wait: float = 0.0) -> float:
    """One GCRA decision under the bucket's row lock (the upsert creates and locks it)."""
    return sqlrules.acquire(PgTx(conn), key, interval, burst, now, cost, max_wait)


def acquire_all(conn: Conn, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
    """One token from each bucket or from none, under the buckets' row locks (taken in key order)."""
    return sqlrules.acquire_all(PgTx(conn), buckets, now)


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


def remember_event_id(conn: Conn, source: str, event_id: str, now: float) -> bool:
    row = conn.execute(
        "INSERT INTO seen_events (source, event_id, seen_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (source, event_id, now),
    ).fetchone()
    return row is not None


def stats(conn: Conn, now: float) -> StorageStats:
    by_status = {r["status"]: r["n"] for r in conn.execute(
        "SELECT status, COUNT(*) AS n FROM messages GROUP BY status")}
    queue_size = sum(by_status.get(s, 0) for s in (*_CLAIMABLE, "sending"))
    oldest_row = conn.execute(
        "SELECT MIN(due_at) AS oldest FROM messages WHERE status = ANY(%s) AND due_at <= %s", (_CLAIMABLE, now)
    ).fetchone()
    oldest = oldest_row["oldest"] if oldest_row else None
    channels: dict[str, ChannelStats] = {}
    for r in conn.execute(
        "SELECT channel, COUNT(*) AS attempts, "
        "COUNT(*) FILTER (WHERE outcome = 'accepted') AS accepted, "
        "COUNT(*) FILTER (WHERE outcome = 'transient') AS transient, "
        "COUNT(*) FILTER (WHERE outcome = 'permanent') AS permanent, "
        "COUNT(*) FILTER (WHERE delivery_status IN ('delivered', 'read')) AS delivered, "
        "COUNT(*) FILTER (WHERE delivery_status IN ('undelivered', 'failed')) AS undelivered, "
        "COALESCE(SUM(cost), 0) AS cost FROM delivery_reports WHERE finished_at >= %s GROUP BY channel",
        (now - STATS_WINDOW_SECONDS,),
    ).fetchall():
        latencies = sorted(row["ms"] for row in conn.execute(
            "SELECT (finished_at - started_at) * 1000.0 AS ms FROM delivery_reports WHERE channel = %s "
            "AND finished_at >= %s ORDER BY id DESC LIMIT 1000", (r["channel"], now - STATS_WINDOW_SECONDS)))
        channels[r["channel"]] = ChannelStats(
            attempts=r["attempts"], accepted=r["accepted"], transient=r["transient"], permanent=r["permanent"],
            delivered=r["delivered"], undelivered=r["undelivered"], cost=float(r["cost"]),
            p50_latency_ms=percentile(latencies, 0.50), p95_latency_ms=percentile(latencies, 0.95),
        )
    return StorageStats(
        total=sum(by_status.values()), queue_size=queue_size, by_status=by_status, channels=channels,
        oldest_due_age_seconds=None if oldest is None else max(0.0, now - oldest),
    )


Run = Callable[[Callable[[Conn, bool], tuple[int, ...]]], tuple[int, ...]]


def cleanup(run: Run, older_than: float, now: float, batch_size: int) -> Mapping[str, int]:
    """Delete finished old messages (with attempts and events), then old OTPs, event ids and
    buckets, ``batch_size`` rows per transaction."""
    counts = {"delivery_reports": 0, "events": 0, "messages": 0, "otps": 0, "seen_events": 0}

    def messages_batch(conn: Conn, _uncertain: bool) -> tuple[int, ...]:
        row = conn.execute(
            "WITH doomed AS (SELECT id FROM messages WHERE status = ANY(%(finished)s) AND updated_at < %(t)s "
            "  ORDER BY updated_at LIMIT %(n)s FOR UPDATE SKIP LOCKED), "
            "a AS (DELETE FROM delivery_reports WHERE message_id IN (SELECT id FROM doomed) RETURNING 1), "
            "e AS (DELETE FROM events WHERE message_id IN (SELECT id FROM doomed) RETURNING 1), "
            "m AS (DELETE FROM messages WHERE id IN (SELECT id FROM doomed) RETURNING 1) "
            "SELECT (SELECT COUNT(*) FROM a) AS a, (SELECT COUNT(*) FROM e) AS e, (SELECT COUNT(*) FROM m) AS m",
            {"finished": list(FINISHED_STATUSES), "t": older_than, "n": batch_size},
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
