"""Contract: the webhook outbox turns stored events into deliveries once, leases them to one
sender at a time, and records each delivery's life (retry, dead letter, revival, purge).

A backend may make an event visible to ``pull`` a little after its transaction commits (the
PostgreSQL outbox waits until no older transaction is still running), so these tests pull until
the deliveries they expect exist, within a deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from otpagent.model import Event, Status
from otpagent.protocols import DeliveryStatus, MessageUpdate, StorageBackend, WebhookOutbox, event_payload
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, new

__all__ = ["WebhookOutboxContract"]


def _events(storage: StorageBackend, *types: str) -> str:
    """A message whose ``queued`` event is followed by events of ``types``; its id."""
    item = new()
    storage.enqueue([item], T0)
    mid = item.message.id
    storage.update_message(MessageUpdate(message_id=mid, status=Status.QUEUED), T0,
                           events=[Event(type=t, message_id=mid, at=T0, data={"n": i}) for i, t in enumerate(types)])
    return mid


def _pull_until(outbox: WebhookOutbox, count: int, *, endpoint: str = "app", types: frozenset[str] | None = None,
                limit: int = 500, timeout: float = 10.0) -> list[int]:
    """Pull until ``endpoint`` has ``count`` deliveries (or the deadline); each pull's result."""
    pulled: list[int] = []
    deadline = time.monotonic() + timeout
    while len(outbox.list(endpoint=endpoint, limit=100_000)) < count and time.monotonic() < deadline:
        pulled.append(outbox.pull(endpoint, types, T0, limit=limit))
        if not pulled[-1]:
            time.sleep(0.01)
    return pulled


class WebhookOutboxContract(ContractBase):
    """The webhook outbox capability (``webhook_outbox()``); the ``outbox`` fixture has the
    endpoint ``app`` created."""

    def test_each_event_becomes_one_delivery_with_the_standard_payload(self, storage: StorageBackend,
                                                                      outbox: WebhookOutbox) -> None:
        mid = _events(storage, "sent")

        _pull_until(outbox, 2)
        _pull_until(outbox, 3, timeout=0.2)  # nothing more to come

        deliveries = sorted(outbox.list(endpoint="app"), key=lambda d: d.id)
        assert [d.event_type for d in deliveries] == ["queued", "sent"]
        sent = deliveries[1]
        assert sent.webhook_id.startswith("evt_")
        assert sent.payload == event_payload("sent", mid, T0, {"n": 0})
        assert (sent.status, sent.attempts, sent.next_attempt_at) == (DeliveryStatus.PENDING, 0, T0)

    def test_a_new_endpoint_starts_from_now(self, storage: StorageBackend, outbox: WebhookOutbox) -> None:
        _events(storage)
        _pull_until(outbox, 1)
        outbox.ensure_endpoint("later", T0)
        outbox.ensure_endpoint("later", T0)  # idempotent: the cursor stays
        fresh = _events(storage)

        _pull_until(outbox, 1, endpoint="later")
        _pull_until(outbox, 2, endpoint="later", timeout=0.2)

        assert [d.payload["data"]["message_id"] for d in outbox.list(endpoint="later")] == [fresh]

    def test_pulls_filter_by_type_and_page_through_a_big_backlog(self, storage: StorageBackend,
                                                                outbox: WebhookOutbox) -> None:
        _events(storage, *(["sent", "attempt"] * 6))

        pulled = _pull_until(outbox, 6, types=frozenset({"sent"}), limit=4)

        assert sum(pulled) == 6 and max(pulled) <= 4
        assert Counter(d.event_type for d in outbox.list(endpoint="app")) == {"sent": 6}
        assert outbox.pull("app", frozenset({"sent"}), T0) == 0

    def test_two_pumps_pulling_at_once_create_each_delivery_once(self, storage: StorageBackend,
                                                                 outbox: WebhookOutbox) -> None:
        for _ in range(30):
            _events(storage)
        errors: list[BaseException] = []

        def pump() -> None:
            try:
                _pull_until(outbox, 30, limit=3)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=pump) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

        assert errors == []
        ids = [d.webhook_id for d in outbox.list(endpoint="app", limit=1000)]
        assert len(ids) == len(set(ids)) == 30

    def test_two_senders_never_claim_the_same_delivery(self, storage: StorageBackend, outbox: WebhookOutbox) -> None:
        for _ in range(30):
            _events(storage)
        _pull_until(outbox, 30)
        claimed: dict[str, list[int]] = {}
        barrier = threading.Barrier(3)

        def claim(owner: str) -> None:
            barrier.wait(10)
            claimed[owner] = [d.id for d in outbox.claim("app", owner, 60.0, T0, limit=10)]

        threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        every = [i for ids in claimed.values() for i in ids]
        assert len(every) == len(set(every)) == 30
        assert outbox.claim("app", "late", 60.0, T0) == []
        assert len(outbox.claim("app", "late", 60.0, T0 + 61)) == 20, "expired leases are taken over"

    def test_a_delivery_goes_through_retry_dead_letter_revival_and_purge(self, outbox: WebhookOutbox) -> None:
        delivery_id = outbox.add("app", "otp_verified", {"type": "otp.verified", "data": {}}, T0)

        (first,) = outbox.claim("app", "w", 60.0, T0)
        retried = outbox.schedule_retry(first.id, "w", "HTTP 500", T0 + 10, T0)
        not_due = outbox.claim("app", "w", 60.0, T0 + 5)
        (second,) = outbox.claim("app", "w", 60.0, T0 + 10)
        stolen = outbox.mark_dead(second.id, "someone-else", "x", T0 + 10)
        dead = outbox.mark_dead(second.id, "w", "HTTP 500", T0 + 10)
        listed_dead = outbox.list(status=DeliveryStatus.DEAD)
        revived = outbox.retry_dead(T0 + 20, ids=[delivery_id])
        (third,) = outbox.claim("app", "w", 60.0, T0 + 20)
        outbox.release([third.id], "w")
        (fourth,) = outbox.claim("app", "w2", 60.0, T0 + 20)
        delivered = outbox.mark_delivered(fourth.id, "w2", T0 + 21)
        twice = outbox.mark_delivered(fourth.id, "w2", T0 + 21)
        (done,) = outbox.list(endpoint="app")
        kept = outbox.purge(T0)
        purged = outbox.purge(T0 + 22)

        assert first.webhook_id == f"whd_{delivery_id}" == fourth.webhook_id
        assert first.payload == {"type": "otp.verified", "data": {}}
        assert (retried, not_due, stolen, dead, revived, delivered, twice) == (True, [], False, True, 1, True, False)
        assert [d.id for d in listed_dead] == [delivery_id]
        assert (third.attempts, third.cycle_started_at, third.last_error) == (2, T0 + 20, "HTTP 500")
        assert (done.status, done.attempts, done.delivered_at, done.last_error) == (
            DeliveryStatus.DELIVERED, 3, T0 + 21, None)
        assert (kept, purged, outbox.list()) == (0, 1, [])

    def test_retry_dead_revives_by_endpoint(self, outbox: WebhookOutbox) -> None:
        outbox.ensure_endpoint("other", T0)
        for endpoint in ("app", "other"):
            outbox.add(endpoint, "otp_verified", {}, T0)
        for endpoint in ("app", "other"):
            (d,) = outbox.claim(endpoint, "w", 60.0, T0)
            outbox.mark_dead(d.id, "w", "gone", T0)

        assert outbox.retry_dead(T0 + 1, endpoint="other") == 1
        assert [d.endpoint for d in outbox.list(status=DeliveryStatus.PENDING)] == ["other"]
        assert outbox.retry_dead(T0 + 2) == 1

    def test_replay_queues_stored_events_again_under_the_same_webhook_id(self, storage: StorageBackend,
                                                                         outbox: WebhookOutbox) -> None:
        _events(storage, "sent")
        _pull_until(outbox, 2)

        replayed = outbox.replay("app", frozenset({"sent"}), T0 - 1, T0 + 1)

        assert replayed == 1
        counts = Counter((d.event_type, d.webhook_id) for d in outbox.list(endpoint="app"))
        assert sorted(counts.values()) == [1, 2]
        assert counts.most_common(1)[0][0][0] == "sent"
