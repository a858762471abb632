"""The reads and statistics every SQL backend answers with the same SQL, written once.

Each function takes a :class:`~otpagent.storage.sqlrules.Tx` (``?`` placeholders; PostgreSQL
adapts them), so SQLite and PostgreSQL return the same values from the same queries. The SQL
is what both dialects accept (``COUNT(CASE ...)`` rather than SQLite's boolean sums or
PostgreSQL's ``FILTER``).
"""

from __future__ import annotations

from otpagent.model import CLAIMABLE_STATUSES, Attempt, Event, Message
from otpagent.protocols import STATS_WINDOW_SECONDS, ChannelStats, StorageStats
from otpagent.storage.rows import attempt_from_row, event_from_row, message_from_row, percentile
from otpagent.storage.sqlrules import CLAIMABLE_SQL, Tx

__all__ = ["find_by_provider_id", "get_attempts", "get_events", "get_message", "recent_messages", "stats"]

_CHANNEL_STATS = (
    "SELECT channel, COUNT(*) AS attempts, "
    "COUNT(CASE WHEN outcome = 'accepted' THEN 1 END) AS accepted, "
    "COUNT(CASE WHEN outcome = 'transient' THEN 1 END) AS transient, "
    "COUNT(CASE WHEN outcome = 'permanent' THEN 1 END) AS permanent, "
    "COUNT(CASE WHEN delivery_status IN ('delivered', 'read') THEN 1 END) AS delivered, "
    "COUNT(CASE WHEN delivery_status IN ('undelivered', 'failed') THEN 1 END) AS undelivered, "
    "COALESCE(SUM(cost), 0) AS cost FROM delivery_reports WHERE finished_at >= ? GROUP BY channel"
)
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
