"""The webhook outbox on the embedded SQLite backend (the contract: ``protocols.WebhookOutbox``).

Its tables live in the agent's database and are created on first use. Pulling events and
advancing the endpoint's cursor happen in one ``BEGIN IMMEDIATE`` transaction, and SQLite
assigns event ids in commit order (one writer at a time), so a cursor over ``events.id`` never
skips an event. Claims take a lease, so several processes can pump the same endpoint safely.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from otpagent.protocols import Delivery, DeliveryStatus, event_payload
from otpagent.storage.sqlite_writer import SqliteWriter

__all__ = ["SqliteWebhookOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_cursors (endpoint TEXT PRIMARY KEY, last_event_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event_id INTEGER,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    cycle_started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(endpoint, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_recent ON webhook_deliveries(endpoint, id);
"""


class SqliteWebhookOutbox:
    """A :class:`~otpagent.protocols.WebhookOutbox` in the agent's SQLite file (get it with
    :meth:`SqliteStorage.webhook_outbox`)."""

    def __init__(self, storage: SqliteWriter, *, settle: Callable[[], None] = lambda: None) -> None:
        self.storage = storage
        #: Called before reading events: moves the lone enqueues' rows (and their ``queued``
        #: events) out of intake (see :mod:`otpagent.storage.sqlite_intake`).
        self._settle = settle
        with storage.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def ensure_endpoint(self, endpoint: str, now: float) -> None:
        self._settle()
        with self.storage.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO webhook_cursors (endpoint, last_event_id) "
                         "SELECT ?, COALESCE(MAX(id), 0) FROM events", (endpoint,))

    def pull(self, endpoint: str, event_types: Collection[str] | None, now: float, limit: int = 500) -> int:
        # A read first: an idle pump must not take the database's write lock every poll.
        self._settle()
        if self.storage.connection().execute(
                "SELECT 1 FROM events WHERE id > (SELECT last_event_id FROM webhook_cursors WHERE endpoint = ?) "
                "LIMIT 1", (endpoint,)).fetchone() is None:
            return 0
        with self.storage.transaction() as conn:
            row = conn.execute("SELECT last_event_id FROM webhook_cursors WHERE endpoint = ?", (endpoint,)).fetchone()
            if row is None:
                return 0
            events = conn.execute("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                  (row["last_event_id"], limit)).fetchall()
            if not events:
                return 0
            wanted = [e for e in events if event_types is None or e["type"] in event_types]
            self._insert(conn, endpoint, wanted, now)
            conn.execute("UPDATE webhook_cursors SET last_event_id = ? WHERE endpoint = ?",
                         (events[-1]["id"], endpoint))
        return len(wanted)

    def add(self, endpoint: str, event_type: str, payload: Mapping[str, Any], now: float) -> int:
        with self.storage.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO webhook_deliveries (endpoint, event_id, webhook_id, event_type, payload, status, "
                "next_attempt_at, created_at, cycle_started_at, updated_at) "
                "VALUES (?, NULL, '', ?, ?, 'pending', ?, ?, ?, ?)",
                (endpoint, event_type, json.dumps(payload), now, now, now, now))
            delivery_id = int(cur.lastrowid or 0)
            conn.execute("UPDATE webhook_deliveries SET webhook_id = ? WHERE id = ?",
                         (f"whd_{delivery_id}", delivery_id))
        return delivery_id

    def claim(self, endpoint: str, owner: str, lease_seconds: float, now: float, limit: int = 20) -> list[Delivery]:
        if self.storage.connection().execute(
                "SELECT 1 FROM webhook_deliveries WHERE endpoint = ? AND status = 'pending' AND next_attempt_at <= ? "
                "LIMIT 1", (endpoint, now)).fetchone() is None:
            return []
        with self.storage.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM webhook_deliveries WHERE endpoint = ? AND status = 'pending' AND next_attempt_at <= ? "
                "AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ORDER BY next_attempt_at, id LIMIT ?",
                (endpoint, now, now, limit)).fetchall()
            conn.executemany("UPDATE webhook_deliveries SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                             [(owner, now + lease_seconds, r["id"]) for r in rows])
        return [_delivery(r) for r in rows]

    def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        with self.storage.transaction() as conn:
            conn.executemany("UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL "
                             "WHERE id = ? AND lease_owner = ?", [(i, owner) for i in delivery_ids])

    def mark_delivered(self, delivery_id: int, owner: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "status = 'delivered', delivered_at = ?, last_error = NULL",
                            (now,))

    def schedule_retry(self, delivery_id: int, owner: str, error: str, next_attempt_at: float, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "next_attempt_at = ?, last_error = ?", (next_attempt_at, error))

    def mark_dead(self, delivery_id: int, owner: str, error: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "status = 'dead', last_error = ?", (error,))

    def list(self, *, endpoint: str | None = None, status: DeliveryStatus | None = None,
             limit: int = 50) -> list[Delivery]:
        where, params = ["1 = 1"], []
        if endpoint is not None:
            where.append("endpoint = ?")
            params.append(endpoint)
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        rows = self.storage.connection().execute(
            f"SELECT * FROM webhook_deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit)).fetchall()
        return [_delivery(r) for r in rows]

    def retry_dead(self, now: float, *, endpoint: str | None = None, ids: Sequence[int] | None = None) -> int:
        where, params = ["status = 'dead'"], []
        if endpoint is not None:
            where.append("endpoint = ?")
            params.append(endpoint)
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(str(i) for i in ids)
        with self.storage.transaction() as conn:
            return conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, cycle_started_at = ?, "
                f"updated_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE {' AND '.join(where)}",
                (now, now, now, *params)).rowcount

    def replay(self, endpoint: str, event_types: Collection[str] | None, since: float, now: float) -> int:
        self._settle()
        with self.storage.transaction() as conn:
            events = conn.execute("SELECT * FROM events WHERE at >= ? ORDER BY id", (since,)).fetchall()
            wanted = [e for e in events if event_types is None or e["type"] in event_types]
            self._insert(conn, endpoint, wanted, now)
        return len(wanted)

    def purge(self, older_than: float) -> int:
        with self.storage.transaction() as conn:
            return conn.execute("DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'dead') "
                                "AND updated_at < ?", (older_than,)).rowcount

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _insert(conn: sqlite3.Connection, endpoint: str, events: Sequence[sqlite3.Row], now: float) -> None:
        conn.executemany(
            "INSERT INTO webhook_deliveries (endpoint, event_id, webhook_id, event_type, payload, status, "
            "next_attempt_at, created_at, cycle_started_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            [(endpoint, e["id"], f"evt_{e['id']}", e["type"],
              json.dumps(event_payload(e["type"], e["message_id"], e["at"], json.loads(e["data"] or "{}"))),
              now, now, now, now) for e in events])

    def _finish(self, delivery_id: int, owner: str, now: float, sets: str, params: tuple[Any, ...]) -> bool:
        with self.storage.transaction() as conn:
            return conn.execute(
                f"UPDATE webhook_deliveries SET {sets}, attempts = attempts + 1, updated_at = ?, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE id = ? AND status = 'pending' AND lease_owner = ?",
                (*params, now, delivery_id, owner)).rowcount == 1


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"], endpoint=row["endpoint"], webhook_id=row["webhook_id"], event_type=row["event_type"],
        payload=json.loads(row["payload"]), status=DeliveryStatus(row["status"]), attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"], created_at=row["created_at"],
        cycle_started_at=row["cycle_started_at"], last_error=row["last_error"], delivered_at=row["delivered_at"],
    )
