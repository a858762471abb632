"""The webhook outbox on PostgreSQL (the contract: ``otpagent.protocols.WebhookOutbox``).

Why not a cursor over ``events.id`` as on SQLite: here an event's id is taken when it is
inserted, but transactions commit in any order, so an event with a lower id can become visible
after a higher one was already pulled, and an id cursor would skip it for good.

Instead every event records the id of the transaction that wrote it (``events.xid``, a
``xid8``), and an endpoint's cursor is a position in ``(xid, id)`` order. A pull reads only
events whose transaction is below ``pg_snapshot_xmin(pg_current_snapshot())``, taken in the
same statement: every transaction below that horizon has committed or aborted, so no event can
still appear behind it. The pull then moves the cursor up to the horizon (or to the last event
of a full batch), all in one transaction under the cursor row's lock, so two pumps never pull
the same event twice. The price: a long-running writing transaction anywhere in the cluster
holds the horizon back, delaying (never losing) deliveries until it ends.

Claims take a lease with ``FOR UPDATE SKIP LOCKED``, so several processes can pump the same
endpoint without waiting on each other. Every operation runs through :meth:`Database.run`,
which retries on connection loss; those whose commit may already have applied check first.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from otpagent.protocols import Delivery, DeliveryStatus, event_payload
from otpagent_postgres.connection import Conn, Database

__all__ = ["CursorAheadOfDatabase", "PostgresWebhookOutbox"]


class CursorAheadOfDatabase(RuntimeError):
    """The endpoint's cursor is past every transaction id this cluster has handed out.

    Transaction ids only mean something within one cluster. ``pg_upgrade`` and promoting a
    physical replica keep them; restoring a dump into another cluster does not, and when that
    cluster's ids are lower, new events would sort before the saved cursors and never be sent.
    Stopping loudly beats skipping silently.
    """


_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())"
_NEW_CURSOR = (f"INSERT INTO webhook_cursors (endpoint, xid, event_id) VALUES (%s, {_HORIZON}, 0) "
               "ON CONFLICT (endpoint) DO NOTHING").encode()
#: The idle check: is any event between the cursor and the horizon? (A read: no lock, no write;
#: the ORDER BY makes the planner walk ``events_xid`` instead of scanning the table.) Also: is
#: the cursor past the horizon? Within one cluster it cannot be, as the horizon only grows.
_ANY_NEW = (
    f"SELECT c.xid > {_HORIZON} AS ahead, e.found IS NOT NULL AS found FROM webhook_cursors c "
    "LEFT JOIN LATERAL (SELECT 1 AS found FROM events e WHERE (e.xid, e.id) > (c.xid, c.event_id) "
    f"  AND e.xid < {_HORIZON} ORDER BY e.xid, e.id LIMIT 1) e ON TRUE WHERE c.endpoint = %s"
).encode()
_LOCK_CURSOR = b"SELECT xid::text AS xid, event_id FROM webhook_cursors WHERE endpoint = %s FOR UPDATE"
#: One statement, so the horizon and the events read come from the same snapshot.
_PULL = (
    f"WITH h AS (SELECT {_HORIZON} AS xmin) "
    "SELECT h.xmin::text AS horizon, e.id, e.message_id, e.type, e.at, e.data, e.xid::text AS xid "
    "FROM h LEFT JOIN LATERAL (SELECT * FROM events e WHERE (e.xid, e.id) > (%(xid)s::xid8, %(id)s) "
    "  AND e.xid < h.xmin AND (%(types)s::text[] IS NULL OR e.type = ANY(%(types)s::text[])) "
    "  ORDER BY e.xid, e.id LIMIT %(limit)s) e ON TRUE"
).encode()
#: Only ever forwards: the horizon never moves back, and a batch ends past the cursor.
_ADVANCE = (b"UPDATE webhook_cursors SET xid = %(xid)s::xid8, event_id = %(id)s "
            b"WHERE endpoint = %(endpoint)s AND (xid, event_id) < (%(xid)s::xid8, %(id)s)")
_INSERT = (b"INSERT INTO webhook_deliveries (endpoint, event_id, webhook_id, event_type, payload, status, "
           b"next_attempt_at, created_at, cycle_started_at, updated_at) "
           b"VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s)")
_CLAIM = (
    b"WITH picked AS (SELECT id FROM webhook_deliveries WHERE endpoint = %(endpoint)s AND status = 'pending' "
    b"  AND next_attempt_at <= %(now)s AND (lease_expires_at IS NULL OR lease_expires_at <= %(now)s "
    b"  OR (%(mine)s AND lease_owner = %(owner)s)) "
    b"  ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    b"UPDATE webhook_deliveries d SET lease_owner = %(owner)s, lease_expires_at = %(until)s "
    b"FROM picked WHERE d.id = picked.id RETURNING d.*"
)


class PostgresWebhookOutbox:
    """A :class:`~otpagent.protocols.WebhookOutbox` in the storage's schema (migration 2)."""

    def __init__(self, db: Database, *, batch_size: int = 1000) -> None:
        self._db = db
        self.batch_size = batch_size

    def ensure_endpoint(self, endpoint: str, now: float) -> None:
        # A new endpoint starts at the current horizon: events that are already visible to
        # everyone are history (``replay`` sends them); those still being written are sent.
        self._db.run(lambda conn, _u: conn.execute(_NEW_CURSOR, (endpoint,)))

    def pull(self, endpoint: str, event_types: Collection[str] | None, now: float, limit: int = 500) -> int:
        types = None if event_types is None else sorted(event_types)

        def work(conn: Conn, _uncertain: bool) -> int:
            # Safe to redo after an uncertain commit: the retry reads the cursor it left.
            found = conn.execute(_ANY_NEW, (endpoint,)).fetchone()
            if found and found["ahead"]:
                raise CursorAheadOfDatabase(
                    f"webhook cursor of {endpoint!r} is ahead of this database's transaction ids (was a dump "
                    "restored into another cluster?): run UPDATE webhook_cursors SET xid = "
                    "pg_snapshot_xmin(pg_current_snapshot()), event_id = 0; then otpagent webhooks replay --since "
                    "<the restore time>")
            if not (found and found["found"]):
                return 0  # an idle pump neither locks nor writes
            cursor = conn.execute(_LOCK_CURSOR, (endpoint,)).fetchone()
            if cursor is None:
                return 0
            rows = conn.execute(_PULL, {"xid": cursor["xid"], "id": cursor["event_id"], "types": types,
                                        "limit": limit}).fetchall()
            events = [r for r in rows if r["id"] is not None]
            self._insert(conn, endpoint, events, now)
            if len(events) >= limit:
                # A full batch: more may wait below the horizon, so stop right after this one.
                position = {"xid": events[-1]["xid"], "id": events[-1]["id"]}
            else:
                position = {"xid": rows[0]["horizon"], "id": 0}
            conn.execute(_ADVANCE, {**position, "endpoint": endpoint})
            return len(events)

        return self._db.run(work)

    def add(self, endpoint: str, event_type: str, payload: Mapping[str, Any], now: float) -> int:
        text = json.dumps(payload)

        def work(conn: Conn, uncertain: bool) -> int:
            if uncertain:
                done = conn.execute(
                    "SELECT id FROM webhook_deliveries WHERE endpoint = %s AND event_id IS NULL AND event_type = %s "
                    "AND created_at = %s AND payload = %s ORDER BY id LIMIT 1",
                    (endpoint, event_type, now, text)).fetchone()
                if done is not None:
                    return int(done["id"])
            row = conn.execute(
                "INSERT INTO webhook_deliveries (endpoint, event_id, webhook_id, event_type, payload, status, "
                "next_attempt_at, created_at, cycle_started_at, updated_at) "
                "VALUES (%s, NULL, '', %s, %s, 'pending', %s, %s, %s, %s) RETURNING id",
                (endpoint, event_type, text, now, now, now, now)).fetchone()
            assert row is not None
            delivery_id = int(row["id"])
            conn.execute("UPDATE webhook_deliveries SET webhook_id = %s WHERE id = %s",
                         (f"whd_{delivery_id}", delivery_id))
            return delivery_id

        return self._db.run(work)

    def claim(self, endpoint: str, owner: str, lease_seconds: float, now: float, limit: int = 20) -> list[Delivery]:
        def work(conn: Conn, uncertain: bool) -> list[Delivery]:
            # After an uncertain commit the first try's leases are ours already: take them back.
            rows = conn.execute(_CLAIM, {"endpoint": endpoint, "now": now, "owner": owner, "mine": uncertain,
                                         "until": now + lease_seconds, "limit": limit}).fetchall()
            rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
            return [_delivery(r) for r in rows]

        return self._db.run(work)

    def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        if not delivery_ids:
            return
        self._db.run(lambda conn, _u: conn.execute(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ANY(%s) AND lease_owner = %s", (list(delivery_ids), owner)))

    def mark_delivered(self, delivery_id: int, owner: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "delivered",
                            "status = 'delivered', delivered_at = %s, last_error = NULL", (now,))

    def schedule_retry(self, delivery_id: int, owner: str, error: str, next_attempt_at: float, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "pending", "next_attempt_at = %s, last_error = %s",
                            (next_attempt_at, error))

    def mark_dead(self, delivery_id: int, owner: str, error: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, "dead", "status = 'dead', last_error = %s", (error,))

    def list(self, *, endpoint: str | None = None, status: DeliveryStatus | None = None,
             limit: int = 50) -> list[Delivery]:
        rows = self._db.run(lambda conn, _u: conn.execute(
            "SELECT * FROM webhook_deliveries WHERE (%(endpoint)s::text IS NULL OR endpoint = %(endpoint)s) "
            "AND (%(status)s::text IS NULL OR status = %(status)s) ORDER BY id DESC LIMIT %(limit)s",
            {"endpoint": endpoint, "status": None if status is None else status.value, "limit": limit}).fetchall())
        return [_delivery(r) for r in rows]

    def retry_dead(self, now: float, *, endpoint: str | None = None, ids: Sequence[int] | None = None) -> int:
        # Idempotent: a retry after an uncertain commit finds nothing dead left and changes nothing.
        return self._db.run(lambda conn, _u: conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %(now)s, cycle_started_at = %(now)s, "
            "updated_at = %(now)s, lease_owner = NULL, lease_expires_at = NULL WHERE status = 'dead' "
            "AND (%(endpoint)s::text IS NULL OR endpoint = %(endpoint)s) "
            "AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))",
            {"now": now, "endpoint": endpoint, "ids": list(ids) if ids else None}).rowcount)

    def replay(self, endpoint: str, event_types: Collection[str] | None, since: float, now: float) -> int:
        types = None if event_types is None else sorted(event_types)

        def work(conn: Conn, uncertain: bool) -> int:
            if uncertain:
                done = conn.execute(
                    "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE endpoint = %s AND event_id IS NOT NULL "
                    "AND created_at = %s AND cycle_started_at = %s", (endpoint, now, now)).fetchone()
                if done and done["n"]:
                    return int(done["n"])
            events = conn.execute(
                "SELECT id, message_id, type, at, data FROM events WHERE at >= %(since)s "
                "AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[])) ORDER BY id",
                {"since": since, "types": types}).fetchall()
            self._insert(conn, endpoint, events, now)
            return len(events)

        return self._db.run(work)

    def purge(self, older_than: float) -> int:
        """Delete finished deliveries in batches, each its own short transaction."""
        total = 0
        for _ in range(1_000_000):
            n = self._db.run(lambda conn, _u: conn.execute(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
                "WHERE status IN ('delivered', 'dead') AND updated_at < %s LIMIT %s)",
                (older_than, self.batch_size)).rowcount)
            total += n
            if n < self.batch_size:
                break
        return total

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _insert(conn: Conn, endpoint: str, events: Sequence[Mapping[str, Any]], now: float) -> None:
        if not events:
            return
        with conn.cursor() as cur:
            cur.executemany(_INSERT, [
                (endpoint, e["id"], f"evt_{e['id']}", e["type"],
                 json.dumps(event_payload(e["type"], e["message_id"], e["at"], json.loads(e["data"] or "{}"))),
                 now, now, now, now) for e in events])

    def _finish(self, delivery_id: int, owner: str, now: float, status: str, sets: str,
                params: tuple[Any, ...]) -> bool:
        def work(conn: Conn, uncertain: bool) -> bool:
            applied = conn.execute(
                f"UPDATE webhook_deliveries SET {sets}, attempts = attempts + 1, updated_at = %s, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE id = %s AND status = 'pending' AND lease_owner = %s".encode(),
                (*params, now, delivery_id, owner)).rowcount == 1
            if not applied and uncertain:
                # The first try may have committed: it left the row unleased, stamped with ``now``.
                applied = conn.execute(
                    "SELECT 1 FROM webhook_deliveries WHERE id = %s AND status = %s AND updated_at = %s "
                    "AND lease_owner IS NULL", (delivery_id, status, now)).fetchone() is not None
            return applied

        return self._db.run(work)


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"], endpoint=row["endpoint"], webhook_id=row["webhook_id"], event_type=row["event_type"],
        payload=json.loads(row["payload"]), status=DeliveryStatus(row["status"]), attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"], created_at=row["created_at"],
        cycle_started_at=row["cycle_started_at"], last_error=row["last_error"], delivered_at=row["delivered_at"],
    )


if TYPE_CHECKING:
    from otpagent.protocols import WebhookOutbox

    _conforms: WebhookOutbox = PostgresWebhookOutbox(Database("", "public"))  # mypy checks the protocol here
