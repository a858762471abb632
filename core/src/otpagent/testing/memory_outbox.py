"""The webhook outbox of an in-memory store (the contract: ``otpagent.protocols.WebhookOutbox``).

Event ids are handed out under the store's lock, in commit order, so a cursor over them never
skips an event (as on SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from otpagent.protocols import Delivery, DeliveryStatus, event_payload
from otpagent.testing.memory_store import MemoryStore

__all__ = ["InMemoryWebhookOutbox"]


class InMemoryWebhookOutbox:
    """A :class:`~otpagent.protocols.WebhookOutbox` in an in-memory store."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def ensure_endpoint(self, endpoint: str, now: float) -> None:
        with self._store.transaction() as s:
            s.webhook_cursors.setdefault(endpoint, max(s.events, default=0))

    def pull(self, endpoint: str, event_types: Collection[str] | None, now: float, limit: int = 500) -> int:
        with self._store.transaction() as s:
            cursor = s.webhook_cursors.get(endpoint)
            if cursor is None:
                return 0
            batch = [i for i in s.events if i > cursor][:limit]
            if not batch:
                return 0
            wanted = [i for i in batch if event_types is None or s.events[i][1] in event_types]
            self._insert(endpoint, wanted, now)
            s.webhook_cursors[endpoint] = batch[-1]
        return len(wanted)

    def add(self, endpoint: str, event_type: str, payload: Mapping[str, Any], now: float) -> int:
        text = json.dumps(payload)
        with self._store.transaction() as s:
            delivery_id = s.next_delivery_id()
            s.webhook_deliveries[delivery_id] = _new(delivery_id, endpoint, None, f"whd_{delivery_id}", event_type,
                                                     text, now)
        return delivery_id

    def claim(self, endpoint: str, owner: str, lease_seconds: float, now: float, limit: int = 20) -> list[Delivery]:
        with self._store.transaction() as s:
            due = sorted((d for d in s.webhook_deliveries.values()
                          if d["endpoint"] == endpoint and d["status"] == "pending" and d["next_attempt_at"] <= now
                          and (d["lease_expires_at"] is None or d["lease_expires_at"] <= now)),
                         key=lambda d: (d["next_attempt_at"], d["id"]))[:limit]
            for d in due:
                d["lease_owner"], d["lease_expires_at"] = owner, now + lease_seconds
            return [_delivery(d) for d in due]

    def release(self, delivery_ids: Sequence[int], owner: str) -> None:
        with self._store.transaction() as s:
            for i in delivery_ids:
                d = s.webhook_deliveries.get(i)
                if d is not None and d["lease_owner"] == owner:
                    d["lease_owner"] = d["lease_expires_at"] = None

    def mark_delivered(self, delivery_id: int, owner: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, status="delivered", delivered_at=now, last_error=None)

    def schedule_retry(self, delivery_id: int, owner: str, error: str, next_attempt_at: float, now: float) -> bool:
        return self._finish(delivery_id, owner, now, next_attempt_at=next_attempt_at, last_error=error)

    def mark_dead(self, delivery_id: int, owner: str, error: str, now: float) -> bool:
        return self._finish(delivery_id, owner, now, status="dead", last_error=error)

    def list(self, *, endpoint: str | None = None, status: DeliveryStatus | None = None,
             limit: int = 50) -> list[Delivery]:
        with self._store.transaction() as s:
            rows = [d for d in reversed(s.webhook_deliveries.values())
                    if (endpoint is None or d["endpoint"] == endpoint)
                    and (status is None or d["status"] == status.value)][:limit]
            return [_delivery(d) for d in rows]

    def retry_dead(self, now: float, *, endpoint: str | None = None, ids: Sequence[int] | None = None) -> int:
        with self._store.transaction() as s:
            dead = [d for d in s.webhook_deliveries.values() if d["status"] == "dead"
                    and (endpoint is None or d["endpoint"] == endpoint) and (not ids or d["id"] in ids)]
            for d in dead:
                d.update(status="pending", next_attempt_at=now, cycle_started_at=now, updated_at=now,
                         lease_owner=None, lease_expires_at=None)
            return len(dead)

    def replay(self, endpoint: str, event_types: Collection[str] | None, since: float, now: float) -> int:
        with self._store.transaction() as s:
            wanted = [i for i, e in s.events.items() if e[2] >= since and (event_types is None or e[1] in event_types)]
            self._insert(endpoint, wanted, now)
        return len(wanted)

    def purge(self, older_than: float) -> int:
        with self._store.transaction() as s:
            doomed = [i for i, d in s.webhook_deliveries.items()
                      if d["status"] in ("delivered", "dead") and d["updated_at"] < older_than]
            for i in doomed:
                del s.webhook_deliveries[i]
            return len(doomed)

    # -- helpers -------------------------------------------------------------------------------
    def _insert(self, endpoint: str, event_ids: Sequence[int], now: float) -> None:
        s = self._store
        payloads = []
        for i in event_ids:
            e = s.event_row(i)
            body = event_payload(e["type"], e["message_id"], e["at"], json.loads(e["data"] or "{}"))
            payloads.append((i, e["type"], json.dumps(body)))
        for event_id, event_type, text in payloads:
            delivery_id = s.next_delivery_id()
            s.webhook_deliveries[delivery_id] = _new(delivery_id, endpoint, event_id, f"evt_{event_id}", event_type,
                                                     text, now)

    def _finish(self, delivery_id: int, owner: str, now: float, **changes: Any) -> bool:
        with self._store.transaction() as s:
            d = s.webhook_deliveries.get(delivery_id)
            if d is None or d["status"] != "pending" or d["lease_owner"] != owner:
                return False
            d.update(changes)
            d.update(attempts=d["attempts"] + 1, updated_at=now, lease_owner=None, lease_expires_at=None)
            return True


def _new(delivery_id: int, endpoint: str, event_id: int | None, webhook_id: str, event_type: str, payload: str,
         now: float) -> dict[str, Any]:
    return {"id": delivery_id, "endpoint": endpoint, "event_id": event_id, "webhook_id": webhook_id,
            "event_type": event_type, "payload": payload, "status": "pending", "attempts": 0, "next_attempt_at": now,
            "last_error": None, "created_at": now, "cycle_started_at": now, "updated_at": now, "delivered_at": None,
            "lease_owner": None, "lease_expires_at": None}


def _delivery(d: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=d["id"], endpoint=d["endpoint"], webhook_id=d["webhook_id"], event_type=d["event_type"],
        payload=json.loads(d["payload"]), status=DeliveryStatus(d["status"]), attempts=d["attempts"],
        next_attempt_at=d["next_attempt_at"], created_at=d["created_at"], cycle_started_at=d["cycle_started_at"],
        last_error=d["last_error"], delivered_at=d["delivered_at"],
    )
