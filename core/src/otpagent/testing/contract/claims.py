"""Contract: claim_due leases due messages in priority order, expired leases come back, and a
live worker's heartbeat (renew_leases) keeps its own."""

from __future__ import annotations

from otpagent.model import Priority, Status
from otpagent.protocols import MessageUpdate, StorageBackend
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, new
from otpagent.testing.openers import StoreOpener

__all__ = ["ClaimContract"]


class ClaimContract(ContractBase):
    """claim_due leases due messages in priority order, expired leases come back, live ones are renewed."""

    def test_claims_highest_priority_first(self, storage: StorageBackend) -> None:
        order = [Priority.LOW, Priority.MEDIUM, Priority.CRITICAL, Priority.HIGH]
        batch = [new(priority=p) for p in order]
        storage.enqueue(batch, T0)

        first = storage.claim_due("w1", 1, 30.0, T0)
        rest = storage.claim_due("w1", 10, 30.0, T0)

        assert [m.priority for m in first] == [Priority.CRITICAL]
        assert [m.priority for m in rest] == [Priority.HIGH, Priority.MEDIUM, Priority.LOW]

    def test_within_a_priority_earliest_due_then_oldest_comes_first(self, storage: StorageBackend) -> None:
        late = new(due_at=T0 - 10, now=T0 - 100)
        early = new(due_at=T0 - 50, now=T0 - 100)
        same_due_a = new(due_at=T0 - 5, now=T0 - 100)
        same_due_b = new(due_at=T0 - 5, now=T0 - 100)
        storage.enqueue([late, early, same_due_a, same_due_b], T0 - 100)

        claimed = storage.claim_due("w1", 10, 30.0, T0)

        expected = [early, late, same_due_a, same_due_b]
        assert [m.id for m in claimed] == [n.message.id for n in expected]

    def test_a_scheduled_message_is_not_claimed_before_it_is_due(self, storage: StorageBackend) -> None:
        scheduled = new(due_at=T0 + 60, priority=Priority.CRITICAL)
        storage.enqueue([scheduled], T0)
        assert storage.get_message(scheduled.message.id).status is Status.SCHEDULED  # type: ignore[union-attr]

        assert storage.claim_due("w1", 10, 30.0, T0 + 59.9) == []
        claimed = storage.claim_due("w1", 10, 30.0, T0 + 60)

        assert [m.id for m in claimed] == [scheduled.message.id]

    def test_a_claimed_message_is_sending_and_leased_to_its_worker(self, storage: StorageBackend) -> None:
        item = new()
        storage.enqueue([item], T0)

        (claimed,) = storage.claim_due("worker-a", 5, 30.0, T0 + 1)

        assert claimed.status is Status.SENDING
        assert claimed.lease_owner == "worker-a"
        assert claimed.lease_expires_at == T0 + 31
        stored = storage.get_message(item.message.id)
        assert stored is not None
        assert (stored.status, stored.lease_owner, stored.lease_expires_at) == (Status.SENDING, "worker-a", T0 + 31)

    def test_claim_respects_the_limit_and_never_hands_out_a_message_twice(self, storage: StorageBackend) -> None:
        storage.enqueue([new() for _ in range(5)], T0)

        first = storage.claim_due("w1", 3, 30.0, T0)
        second = storage.claim_due("w2", 3, 30.0, T0)
        third = storage.claim_due("w3", 3, 30.0, T0)

        assert (len(first), len(second), third) == (3, 2, [])
        assert not {m.id for m in first} & {m.id for m in second}
        assert storage.claim_due("w1", 0, 30.0, T0) == []

    def test_an_expired_lease_is_reclaimed_by_another_worker(self, storage: StorageBackend) -> None:
        item = new()
        storage.enqueue([item], T0)
        storage.claim_due("dead-worker", 1, 30.0, T0)

        assert storage.claim_due("w2", 1, 30.0, T0 + 29) == []
        (reclaimed,) = storage.claim_due("w2", 1, 30.0, T0 + 30)

        assert reclaimed.id == item.message.id
        assert reclaimed.lease_owner == "w2"
        # The dead worker's late write no longer applies; the new owner's does.
        late = MessageUpdate(message_id=item.message.id, status=Status.SENT, expected_owner="dead-worker")
        assert storage.update_message(late, T0 + 31) is False
        mine = MessageUpdate(message_id=item.message.id, status=Status.SENT, expected_owner="w2")
        assert storage.update_message(mine, T0 + 31) is True

    def test_an_expired_lease_does_not_jump_ahead_of_higher_priority_work(self, storage: StorageBackend) -> None:
        low = new(priority=Priority.LOW)
        storage.enqueue([low], T0)
        storage.claim_due("dead-worker", 1, 10.0, T0)
        critical = new(priority=Priority.CRITICAL, now=T0 + 20)
        storage.enqueue([critical], T0 + 20)

        first = storage.claim_due("w2", 1, 10.0, T0 + 20)
        second = storage.claim_due("w2", 1, 10.0, T0 + 20)

        assert [m.id for m in first] == [critical.message.id]
        assert [m.id for m in second] == [low.message.id]

    def test_finished_and_future_retrying_messages_are_not_claimed(self, storage: StorageBackend) -> None:
        done, retrying = new(), new()
        storage.enqueue([done, retrying], T0)
        storage.claim_due("w1", 2, 30.0, T0)
        storage.update_message(MessageUpdate(message_id=done.message.id, status=Status.SENT), T0)
        storage.update_message(MessageUpdate(message_id=retrying.message.id, status=Status.RETRYING, due_at=T0 + 5), T0)

        assert storage.claim_due("w1", 10, 30.0, T0 + 4) == []
        assert [m.id for m in storage.claim_due("w1", 10, 30.0, T0 + 5)] == [retrying.message.id]
        storage.update_message(MessageUpdate(message_id=retrying.message.id, status=Status.FAILED), T0 + 6)
        assert storage.claim_due("w1", 10, 30.0, T0 + 1000) == []

    def test_recent_messages_lists_the_most_recently_updated_first(self, storage: StorageBackend) -> None:
        a, b, c = new(), new(), new()
        storage.enqueue([a, b, c], T0)
        storage.claim_due("w1", 3, 30.0, T0)
        storage.update_message(MessageUpdate(message_id=a.message.id, status=Status.SENT), T0 + 10)

        recent = storage.recent_messages(2)

        assert len(recent) == 2
        assert recent[0].id == a.message.id

    def test_renewing_extends_every_lease_the_worker_holds_and_no_other(self, storage: StorageBackend) -> None:
        mine, theirs, done = new(), new(), new()
        storage.enqueue([mine, done], T0)
        storage.claim_due("alive", 2, 10.0, T0)
        storage.update_message(MessageUpdate(message_id=done.message.id, status=Status.SENT), T0 + 1)
        storage.enqueue([theirs], T0)
        storage.claim_due("other", 1, 10.0, T0)

        renewed = storage.renew_leases("alive", 10.0, T0 + 8)

        assert renewed == 1, "only the worker's messages still sending"
        stored = storage.get_message(mine.message.id)
        assert stored is not None
        assert (stored.status, stored.lease_owner, stored.lease_expires_at) == (Status.SENDING, "alive", T0 + 18)
        assert storage.get_message(theirs.message.id).lease_expires_at == T0 + 10  # type: ignore[union-attr]
        assert storage.get_message(done.message.id).lease_owner is None  # type: ignore[union-attr]

    def test_a_renewed_lease_is_not_reclaimed_and_an_unrenewed_one_is(self, storage: StorageBackend) -> None:
        alive, dead = new(priority=Priority.HIGH), new()
        storage.enqueue([alive], T0)
        storage.claim_due("alive", 1, 10.0, T0)
        storage.enqueue([dead], T0)
        storage.claim_due("dead", 1, 10.0, T0)

        storage.renew_leases("alive", 10.0, T0 + 9)
        reclaimed = storage.claim_due("w2", 10, 10.0, T0 + 10)

        assert [m.id for m in reclaimed] == [dead.message.id]

    def test_a_claim_without_reclaim_leaves_expired_leases_for_later(self, storage: StorageBackend) -> None:
        dead, ready = new(priority=Priority.HIGH), new()
        storage.enqueue([dead], T0)
        storage.claim_due("dead", 1, 10.0, T0)
        storage.enqueue([ready], T0 + 1)

        first = storage.claim_due("w2", 10, 10.0, T0 + 20, reclaim=False)
        later = storage.claim_due("w2", 10, 10.0, T0 + 21)

        assert [m.id for m in first] == [ready.message.id]
        assert [m.id for m in later] == [dead.message.id]

    def test_renewing_for_a_worker_without_leases_changes_nothing(self, storage: StorageBackend) -> None:
        item = new()
        storage.enqueue([item], T0)

        assert storage.renew_leases("nobody", 10.0, T0) == 0
        assert storage.get_message(item.message.id).status is Status.QUEUED  # type: ignore[union-attr]

    def test_a_second_handle_on_the_store_sees_what_the_first_wrote(self, storage: StorageBackend,
                                                                    store_opener: StoreOpener) -> None:
        item = new()
        storage.enqueue([item], T0)

        other = store_opener()
        try:
            (claimed,) = other.claim_due("other", 1, 30.0, T0)
        finally:
            other.close()

        assert claimed.id == item.message.id
        assert storage.get_message(item.message.id).lease_owner == "other"  # type: ignore[union-attr]
