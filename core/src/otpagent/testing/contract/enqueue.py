"""Contract: enqueue is one transaction, and idempotency keys follow Stripe's rules for 24 h."""

from __future__ import annotations

import attrs
import pytest

from otpagent.model import Priority, Status
from otpagent.protocols import IDEMPOTENCY_WINDOW_SECONDS, IdempotencyConflict, StorageBackend
from otpagent.storage.rows import queued_event
from otpagent.testing.contract.base import ContractBase, stored_count
from otpagent.testing.data import T0, make_message, new

__all__ = ["EnqueueContract"]

DAY = IDEMPOTENCY_WINDOW_SECONDS
#: The W3C trace context an enqueue span stores with its message (otpagent.tracing).
TRACE_CONTEXT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor=v1"}


class EnqueueContract(ContractBase):
    """enqueue is one transaction, and idempotency keys follow Stripe's rules for 24 h."""

    def test_enqueue_stores_every_message_of_a_batch_with_a_queued_event(self, storage: StorageBackend) -> None:
        batch = [new(priority=Priority.LOW), new(priority=Priority.CRITICAL, metadata={"k": "v"})]

        results = storage.enqueue(batch, T0)

        assert [r.message_id for r in results] == [b.message.id for b in batch]
        assert all(r.created for r in results)
        stored = storage.get_message(batch[1].message.id)
        assert stored is not None
        assert stored.priority is Priority.CRITICAL
        assert stored.status is Status.QUEUED
        assert dict(stored.metadata) == {"k": "v"}
        assert stored.body == batch[1].message.body
        assert [e.type for e in storage.get_events(batch[0].message.id)] == ["queued"]

    def test_a_stored_message_reads_back_field_for_field(self, storage: StorageBackend) -> None:
        original = make_message(
            email="a@example.com", subject="Hi", user_id="u1", channels=("SMS", "EMAIL"), preferred_channel="SMS",
            max_retries=2, callback_url="https://app.example/cb", metadata={"n": 1}, secret="123456",
            expires_at=T0 + 300, route=("SMS", "EMAIL"), idempotency_key="k-1", trace_context=TRACE_CONTEXT,
        )
        storage.enqueue([new(original, "fp")], T0)

        assert storage.get_message(original.id) == original

    def test_messages_of_a_batch_read_back_field_for_field(self, storage: StorageBackend) -> None:
        # A backend may write a lone message and a batch differently (PostgreSQL does): both must
        # keep every field.
        full = make_message(
            email="a@example.com", subject="Hi", user_id="u1", channels=("SMS", "EMAIL"), preferred_channel="SMS",
            max_retries=2, callback_url="https://app.example/cb", metadata={"n": 1, "s": "é"}, secret="123456",
            expires_at=T0 + 300.25, route=("SMS", "EMAIL"), trace_context=TRACE_CONTEXT,
        )
        bare = make_message()
        storage.enqueue([new(full), new(bare)], T0)

        assert storage.get_message(full.id) == full
        assert storage.get_message(bare.id) == bare

    def test_fields_a_batch_shares_and_fields_it_does_not_both_read_back(self, storage: StorageBackend) -> None:
        # PostgreSQL sends a field the whole batch shares once: every kind of value must survive
        # being shared, and each message still gets its own ``queued``/``scheduled`` event.
        full = make_message(
            email="a@example.com", subject="Hi", user_id="u1", channels=("SMS", "EMAIL"), preferred_channel="SMS",
            max_retries=2, callback_url="https://app.example/cb", metadata={"n": 1, "s": "é"}, secret="123456",
            expires_at=T0 + 300.25, route=("SMS", "EMAIL"), trace_context=TRACE_CONTEXT,
        )
        twins = [attrs.evolve(full, id=f"{full.id}-{i}") for i in range(3)]
        batches = [twins, [*twins[:2], attrs.evolve(full, id=full.id + "-later", status=Status.SCHEDULED,
                                                    due_at=T0 + 60, priority=Priority.LOW, body="later")]]
        batches[1][:2] = [attrs.evolve(m, id=m.id + "-b") for m in batches[1][:2]]
        for batch in batches:
            storage.enqueue([new(m) for m in batch], T0)

            for m in batch:
                assert storage.get_message(m.id) == m
                assert [attrs.evolve(e, id=None) for e in storage.get_events(m.id)] == [queued_event(m, T0)]

    def test_the_worker_that_claims_a_message_gets_its_trace_context(self, storage: StorageBackend) -> None:
        traced, untraced = new(trace_context=TRACE_CONTEXT), new()
        storage.enqueue([traced, untraced], T0)

        claimed = {m.id: m for m in storage.claim_due("w1", 10, 30.0, T0 + 1)}

        assert claimed[traced.message.id].trace_context == TRACE_CONTEXT
        assert claimed[untraced.message.id].trace_context is None

    def test_unknown_message_is_none(self, storage: StorageBackend) -> None:
        assert storage.get_message("does-not-exist") is None
        assert storage.get_attempts("does-not-exist") == []
        assert storage.get_events("does-not-exist") == []

    def test_same_key_and_fingerprint_returns_the_first_id_without_inserting(self, storage: StorageBackend) -> None:
        first = new(idempotency_key="order-1", fingerprint="fp-a")
        storage.enqueue([first], T0)
        again = new(idempotency_key="order-1", fingerprint="fp-a")

        (result,) = storage.enqueue([again], T0 + 60)

        assert result.message_id == first.message.id
        assert result.created is False
        assert storage.get_message(again.message.id) is None

    def test_same_key_with_a_different_fingerprint_is_a_conflict(self, storage: StorageBackend) -> None:
        storage.enqueue([new(idempotency_key="order-1", fingerprint="fp-a")], T0)

        with pytest.raises(IdempotencyConflict) as caught:
            storage.enqueue([new(idempotency_key="order-1", fingerprint="fp-b")], T0 + 60)

        assert caught.value.key == "order-1"

    def test_a_batch_with_an_idempotency_conflict_writes_nothing(self, storage: StorageBackend) -> None:
        storage.enqueue([new(idempotency_key="taken", fingerprint="fp-a")], T0)
        fresh, also_fresh = new(idempotency_key="fresh", fingerprint="x"), new()
        clashing = new(idempotency_key="taken", fingerprint="fp-other")

        with pytest.raises(IdempotencyConflict) as caught:
            storage.enqueue([fresh, also_fresh, clashing], T0 + 1)

        assert caught.value.index == 2
        assert storage.get_message(fresh.message.id) is None
        assert storage.get_message(also_fresh.message.id) is None
        assert stored_count(storage) == 1
        # The key of the rolled-back batch stayed free.
        (result,) = storage.enqueue([new(idempotency_key="fresh", fingerprint="y")], T0 + 2)
        assert result.created is True

    def test_a_key_repeated_inside_one_batch_follows_the_same_rules(self, storage: StorageBackend) -> None:
        a, b = new(idempotency_key="dup", fingerprint="fp"), new(idempotency_key="dup", fingerprint="fp")

        results = storage.enqueue([a, b], T0)

        assert [r.message_id for r in results] == [a.message.id, a.message.id]
        assert [r.created for r in results] == [True, False]
        with pytest.raises(IdempotencyConflict):
            storage.enqueue([new(idempotency_key="dup2", fingerprint="1"),
                             new(idempotency_key="dup2", fingerprint="2")],
                            T0)
        assert stored_count(storage) == 1

    def test_a_key_older_than_a_day_is_free_again(self, storage: StorageBackend) -> None:
        first = new(idempotency_key="order-1", fingerprint="fp-a")
        storage.enqueue([first], T0)
        later = new(idempotency_key="order-1", fingerprint="fp-b", now=T0 + DAY + 1)

        (result,) = storage.enqueue([later], T0 + DAY + 1)

        assert result.created is True
        assert result.message_id == later.message.id
        assert storage.get_message(first.message.id) is not None
        # The new message now owns the key.
        (again,) = storage.enqueue([new(idempotency_key="order-1", fingerprint="fp-b")], T0 + DAY + 2)
        assert again.message_id == later.message.id

    def test_a_key_just_inside_the_day_still_holds(self, storage: StorageBackend) -> None:
        first = new(idempotency_key="order-1", fingerprint="fp-a")
        storage.enqueue([first], T0)

        (result,) = storage.enqueue([new(idempotency_key="order-1", fingerprint="fp-a")], T0 + DAY - 1)

        assert (result.message_id, result.created) == (first.message.id, False)

    def test_a_key_repeated_within_one_batch_makes_one_message(self, storage: StorageBackend) -> None:
        first = new(idempotency_key="dup", fingerprint="f1")
        again = new(idempotency_key="dup", fingerprint="f1")

        results = storage.enqueue([first, again], T0)

        assert results[0].created and not results[1].created
        assert results[1].message_id == results[0].message_id

    def test_a_key_reused_with_another_body_within_one_batch_writes_nothing(self, storage: StorageBackend) -> None:
        with pytest.raises(IdempotencyConflict):
            storage.enqueue([new(idempotency_key="dup", fingerprint="f1"),
                             new(idempotency_key="dup", fingerprint="f2")],
                            T0)
        assert stored_count(storage) == 0

