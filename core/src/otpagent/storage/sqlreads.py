"""The reads and statistics every SQL backend answers with the same SQL, written once.

Each function takes a :class:`~otpagent.storage.sqlrules.Tx` (``?`` placeholders; PostgreSQL
adapts them), so SQLite and PostgreSQL return the same values from the same queries. The SQL
is what both dialects accept (``COUNT(CASE ...)`` rather than SQLite's boolean sums or
PostgreSQL's ``FILTER``).
"""

from __future__ import annotations

import math

from otpagent.model import CLAIMABLE_STATUSES, Attempt, Event, Message
from otpagent.protocols import (
    ACTIVITY_EVENT_TYPES,
    MAX_HISTORY_BUCKETS,
    STATS_WINDOW_SECONDS,
    ActivityBucket,
    AttemptTally,
    ChannelStats,
    StorageStats,
)
from otpagent.storage.rows import attempt_from_row, event_from_row, message_from_row, percentile
from otpagent.storage.sqlrules import CLAIMABLE_SQL, Row, Tx

__all__ = ["attempt_counts", "event_counts", "find_by_provider_id", "get_attempts", "get_events", "get_message",
           "history", "history_buckets", "recent_messages", "stats"]

#: The counted types as SQL literals: with an explicit list, both SQLite and PostgreSQL read the
#: ``events (type, at)`` index for each type's range of time (and SQLite reads nothing else), so
#: the cost follows the events in the window, not the size of the table.
_TYPES_SQL = ", ".join(f"'{t}'" for t in ACTIVITY_EVENT_TYPES)
#: SQLite's ``events_activity_at`` is partial, ``WHERE type <> 'attempt'`` (the one kind written
#: per send and never counted), and SQLite uses a partial index only for a query that states its
#: condition word for word. True of every counted type, so a no-op for the counts themselves.
_COUNTED = f"type IN ({_TYPES_SQL}) AND type <> 'attempt'"
_TALLY = (
    "COUNT(CASE WHEN outcome = 'accepted' THEN 1 END) AS accepted, "
    "COUNT(CASE WHEN outcome = 'transient' THEN 1 END) AS transient, "
    "COUNT(CASE WHEN outcome = 'permanent' THEN 1 END) AS permanent, "
    "COUNT(CASE WHEN delivery_status IN ('delivered', 'read') THEN 1 END) AS delivered, "
    "COUNT(CASE WHEN delivery_status IN ('undelivered', 'failed') THEN 1 END) AS undelivered"
)
# Buckets: FLOOR of the offset in buckets (SQLite's FLOOR is one of its math functions; the
# SQLite backend supplies it where the library was built without them). Grouped by position:
# PostgreSQL does not see two parameterised expressions as the same.
EVENTS_BY_TYPE = f"SELECT type, COUNT(*) AS n FROM events WHERE {_COUNTED} AND at >= ? AND at <= ? GROUP BY type"
_ATTEMPTS_BY_CHANNEL = (f"SELECT channel, {_TALLY} FROM delivery_reports WHERE finished_at >= ? AND finished_at <= ? "
                        "GROUP BY channel")
_EVENTS_BY_BUCKET = (f"SELECT type, FLOOR((at - ?) / ?) AS k, COUNT(*) AS n FROM events WHERE {_COUNTED} "
                     "AND at >= ? AND at <= ? GROUP BY 1, 2")
_ATTEMPTS_BY_BUCKET = (f"SELECT FLOOR((finished_at - ?) / ?) AS k, {_TALLY} FROM delivery_reports "
                       "WHERE finished_at >= ? AND finished_at <= ? GROUP BY 1")
_CHANNEL_STATS = (f"SELECT channel, COUNT(*) AS attempts, {_TALLY}, COALESCE(SUM(cost), 0) AS cost "
                  "FROM delivery_reports WHERE finished_at >= ? GROUP BY channel")
#: The latest 1000 attempts of the window are enough for stable percentiles, at a bounded cost.
_LATENCIES = ("SELECT (finished_at - started_at) * 1000.0 AS ms FROM delivery_reports WHERE channel = ? "
              "AND finished_at >= ? ORDER BY id DESC LIMIT 1000")


def get_message(tx: Tx, message_id: str) -> Message | None:
    row = tx.one("SELECT * FROM messages WHERE id = ?", (message_id,))
    return message_from_row(row) if row is not None else None


def get_attempts(tx: Tx, message_id: str) -> list[Attempt]:
    rows = tx.all("SELECT * FROM delivery_reports WHERE message_id = ? ORDER BY number, id", (message_id,))
    return [attempt_from_row(r) for r in rows]


def get_events(tx: Tx, message_id: str) -> list[Event]:
    rows = tx.all("SELECT * FROM events WHERE message_id = ? ORDER BY id", (message_id,))
    return [event_from_row(r) for r in rows]


def recent_messages(tx: Tx, limit: int) -> list[Message]:
    rows = tx.all("SELECT * FROM messages ORDER BY updated_at DESC, seq DESC LIMIT ?", (limit,))
    return [message_from_row(r) for r in rows]


def find_by_provider_id(tx: Tx, provider_message_id: str) -> Attempt | None:
    row = tx.one("SELECT * FROM delivery_reports WHERE provider_message_id = ? ORDER BY id DESC LIMIT 1",
                 (provider_message_id,))
    return attempt_from_row(row) if row is not None else None


def stats(tx: Tx, now: float) -> StorageStats:
    """Counts by status, queue size, how long the oldest due message has waited, and each
    channel's performance over the attempts of the last :data:`STATS_WINDOW_SECONDS`.
    """
    by_status = {str(r["status"]): int(r["n"])
                 for r in tx.all("SELECT status, COUNT(*) AS n FROM messages GROUP BY status")}
    queue_size = sum(by_status.get(s.value, 0) for s in CLAIMABLE_STATUSES) + by_status.get("sending", 0)
    oldest_row = tx.one(f"SELECT MIN(due_at) AS oldest FROM messages WHERE status IN ({CLAIMABLE_SQL}) "
                        "AND due_at <= ?", (now,))
    oldest = oldest_row["oldest"] if oldest_row is not None else None
    since = now - STATS_WINDOW_SECONDS
    channels: dict[str, ChannelStats] = {}
    for r in tx.all(_CHANNEL_STATS, (since,)):
        latencies = sorted(float(row["ms"]) for row in tx.all(_LATENCIES, (r["channel"], since)))
        channels[str(r["channel"])] = ChannelStats(
            attempts=int(r["attempts"]), accepted=int(r["accepted"]), transient=int(r["transient"]),
            permanent=int(r["permanent"]), delivered=int(r["delivered"]), undelivered=int(r["undelivered"]),
            cost=float(r["cost"]), p50_latency_ms=percentile(latencies, 0.50),
            p95_latency_ms=percentile(latencies, 0.95),
        )
    return StorageStats(
        total=sum(by_status.values()), queue_size=queue_size, by_status=by_status, channels=channels,
        oldest_due_age_seconds=None if oldest is None else max(0.0, now - float(oldest)),
    )


def _tally(row: Row) -> AttemptTally:
    return AttemptTally(accepted=int(row["accepted"]), transient=int(row["transient"]),
                        permanent=int(row["permanent"]), delivered=int(row["delivered"]),
                        undelivered=int(row["undelivered"]))


def event_counts(tx: Tx, since: float, now: float) -> dict[str, int]:
    """Events by type with ``since <= at <= now`` (see ``Housekeeping.event_counts``)."""
    return {str(r["type"]): int(r["n"]) for r in tx.all(EVENTS_BY_TYPE, (since, now))}


def attempt_counts(tx: Tx, since: float, now: float) -> dict[str, AttemptTally]:
    """Attempts by channel with ``since <= finished_at <= now`` (see ``Housekeeping.attempt_counts``)."""
    return {str(r["channel"]): _tally(r) for r in tx.all(_ATTEMPTS_BY_CHANNEL, (since, now))}


def history_buckets(since: float, now: float, bucket_seconds: float) -> int:
    """How many buckets ``history`` returns; raises ``ValueError`` for a window it refuses."""
    if not bucket_seconds > 0 or not math.isfinite(bucket_seconds):
        raise ValueError(f"bucket_seconds must be a positive number, got {bucket_seconds!r}")
    if now < since:
        raise ValueError(f"the window ends ({now}) before it starts ({since})")
    count = max(1, math.ceil((now - since) / bucket_seconds))
    if count > MAX_HISTORY_BUCKETS:
        raise ValueError(f"{count} buckets asked for; at most {MAX_HISTORY_BUCKETS}")
    return count


def history(tx: Tx, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
    """``activity`` in buckets of ``bucket_seconds`` from ``since`` (see ``Housekeeping``)."""
    count = history_buckets(since, now, bucket_seconds)
    events: list[dict[str, int]] = [{} for _ in range(count)]
    attempts = [AttemptTally() for _ in range(count)]
    for r in tx.all(_EVENTS_BY_BUCKET, (since, bucket_seconds, since, now)):
        k = min(count - 1, int(r["k"]))
        events[k][str(r["type"])] = events[k].get(str(r["type"]), 0) + int(r["n"])
    for r in tx.all(_ATTEMPTS_BY_BUCKET, (since, bucket_seconds, since, now)):
        k = min(count - 1, int(r["k"]))
        attempts[k] = attempts[k] + _tally(r)
    return [ActivityBucket(start=since + k * bucket_seconds, events=events[k], attempts=attempts[k])
            for k in range(count)]
