"""Contract: enqueue_stream is enqueue of every chunk, in one transaction, iterated once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from otpagent.model import Priority, Status
from otpagent.protocols import IdempotencyConflict, NewMessage, StorageBackend, StreamedEnqueue
from otpagent.testing.contract.base import ContractBase, stored_count
from otpagent.testing.data import T0, new

__all__ = ["StreamedEnqueueContract"]


class _Refused(Exception):
    """What the caller's validation raises part-way through the stream."""


def _once(chunks: Sequence[Sequence[NewMessage]], taken: list[int]) -> Iterator[Sequence[NewMessage]]:
    """The chunks as a one-shot generator (as the agent's validation is), counting each take."""
    for chunk in chunks:
        taken.append(len(chunk))
        yield chunk


class StreamedEnqueueContract(ContractBase):
    """The streamed enqueue capability (``enqueue_stream``)."""

    def test_every_chunk_is_stored_in_order_with_its_queued_event(self, streamed_enqueue: StreamedEnqueue,
                                                                   storage: StorageBackend) -> None:
        chunks = [[new(), new(priority=Priority.CRITICAL)], [new(metadata={"k": "v"})], [new(), new(), new()]]
        taken: list[int] = []

        results = streamed_enqueue.enqueue_stream(_once(chunks, taken), T0)

        items = [item for chunk in chunks for item in chunk]
        assert [r.message_id for r in results] == [i.message.id for i in items]
        assert all(r.created for r in results)
        assert taken == [2, 1, 3]
        for item in items:
            assert storage.get_message(item.message.id) == item.message
            assert [e.type for e in storage.get_events(item.message.id)] == ["queued"]
        assert [m.status for m in storage.recent_messages(100)] == [Status.QUEUED] * 6
        claimed = storage.claim_due("w1", 10, 30.0, T0)
        assert claimed[0].id == chunks[0][1].message.id  # the CRITICAL one first

    def test_an_empty_stream_stores_nothing(self, streamed_enqueue: StreamedEnqueue, storage: StorageBackend) -> None:
        assert streamed_enqueue.enqueue_stream(iter(()), T0) == []
        assert stored_count(storage) == 0

    def test_a_stream_that_raises_part_way_writes_nothing(self, streamed_enqueue: StreamedEnqueue,
                                                          storage: StorageBackend) -> None:
        written = [new(), new()]

        def chunks() -> Iterator[Sequence[NewMessage]]:
            yield written
            raise _Refused("entry 2 is invalid")

        with pytest.raises(_Refused):
            streamed_enqueue.enqueue_stream(chunks(), T0)

        assert all(storage.get_message(i.message.id) is None for i in written)
        assert stored_count(storage) == 0
        # The store is as usable as before.
        again = new()
        (result,) = streamed_enqueue.enqueue_stream(iter([[again]]), T0)
        assert result.created and storage.get_message(again.message.id) == again.message

    def test_keys_follow_the_enqueue_rules_and_a_conflict_names_its_place_in_the_stream(
            self, streamed_enqueue: StreamedEnqueue, storage: StorageBackend) -> None:
        first = new(idempotency_key="order-1", fingerprint="fp-a")
        storage.enqueue([first], T0)
        retry, fresh = new(idempotency_key="order-1", fingerprint="fp-a"), new()

        results = streamed_enqueue.enqueue_stream(iter([[fresh], [retry]]), T0 + 1)

        assert [(r.message_id, r.created) for r in results] == [(fresh.message.id, True), (first.message.id, False)]
        before = stored_count(storage)
        doomed, clashing = new(), new(idempotency_key="order-1", fingerprint="fp-b")
        with pytest.raises(IdempotencyConflict) as caught:
            streamed_enqueue.enqueue_stream(iter([[new(), new()], [doomed, clashing]]), T0 + 2)
        assert caught.value.index == 3
        assert storage.get_message(doomed.message.id) is None
        assert stored_count(storage) == before
