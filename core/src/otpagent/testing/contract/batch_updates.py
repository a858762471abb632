"""Contract: update_messages applies each write exactly as update_message would."""

from __future__ import annotations

from otpagent.model import Event, Outcome, Status
from otpagent.protocols import BatchUpdates, MessageUpdate, MessageWrite, StorageBackend
from otpagent.testing.contract.base import ContractBase, claimed
from otpagent.testing.data import T0, make_attempt

__all__ = ["BatchUpdateContract"]


def _sent(mid: str, owner: str, *, provider_id: str = "SM1", cost: float = 0.0) -> MessageWrite:
    return MessageWrite(
        update=MessageUpdate(message_id=mid, status=Status.SENT, expected_owner=owner, channel="SMS",
                             provider_message_id=provider_id, attempt_count=1, channel_attempts=1, add_cost=cost),
        now=T0 + 1, attempt=make_attempt(mid, now=T0 + 1, provider_message_id=provider_id, cost=cost),
        events=(Event(type="attempt", message_id=mid, at=T0 + 1, data={"channel": "SMS"}),
                Event(type="sent", message_id=mid, at=T0 + 1, data={"channel": "SMS", "cost": cost})))


class BatchUpdateContract(ContractBase):
    """The batch updates capability (``update_messages``)."""

    def test_each_write_applies_as_update_message_would(self, batch_updates: BatchUpdates,
                                                        storage: StorageBackend) -> None:
        sent, retrying, theirs = claimed(storage, "w1"), claimed(storage, "w1"), claimed(storage, "w2")
        retry = MessageWrite(
            update=MessageUpdate(message_id=retrying, status=Status.RETRYING, expected_owner="w1", due_at=T0 + 9,
                                 channel_attempts=1, attempt_count=1, last_error="SMS: busy [30001]"),
            now=T0 + 1, attempt=make_attempt(retrying, now=T0 + 1, outcome=Outcome.TRANSIENT),
            events=(Event(type="retrying", message_id=retrying, at=T0 + 1, data={"retry_in": 8.0}),))

        results = batch_updates.update_messages([_sent(sent, "w1", cost=0.25), retry, _sent(theirs, "w1")])

        assert results == [True, True, False]
        m = storage.get_message(sent)
        assert m is not None
        assert (m.status, m.channel, m.provider_message_id, m.cost, m.updated_at) == (
            Status.SENT, "SMS", "SM1", 0.25, T0 + 1)
        assert (m.lease_owner, m.lease_expires_at) == (None, None)
        assert [(e.type, dict(e.data)) for e in storage.get_events(sent)][1:] == [
            ("attempt", {"channel": "SMS"}), ("sent", {"channel": "SMS", "cost": 0.25})]
        assert storage.get_events(sent)[0].type == "queued"
        r = storage.get_message(retrying)
        assert r is not None
        assert (r.status, r.due_at, r.last_error, r.lease_owner) == (Status.RETRYING, T0 + 9, "SMS: busy [30001]", None)
        t = storage.get_message(theirs)
        assert t is not None
        assert (t.status, t.lease_owner) == (Status.SENDING, "w2"), "another worker's message is left alone"
        assert [e.type for e in storage.get_events(theirs)] == ["queued"], "events only with an applied update"
        assert len(storage.get_attempts(theirs)) == 1, "the attempt is kept even when the update does not apply"

    def test_many_writes_each_get_their_own_answer_in_order(self, batch_updates: BatchUpdates,
                                                            storage: StorageBackend) -> None:
        owners = [f"w{i % 3}" for i in range(30)]
        ids = [claimed(storage, owner) for owner in owners]

        results = batch_updates.update_messages([_sent(mid, "w0", provider_id=f"SM{i}") for i, mid in enumerate(ids)])

        assert results == [owner == "w0" for owner in owners]
        for i, (mid, owner) in enumerate(zip(ids, owners, strict=True)):
            m = storage.get_message(mid)
            assert m is not None
            assert m.status is (Status.SENT if owner == "w0" else Status.SENDING)
            assert [a.provider_message_id for a in storage.get_attempts(mid)] == [f"SM{i}"]

    def test_a_batch_and_single_updates_agree(self, batch_updates: BatchUpdates, storage: StorageBackend) -> None:
        batched, single = claimed(storage, "w1"), claimed(storage, "w1")

        assert batch_updates.update_messages([_sent(batched, "w1", cost=0.5)]) == [True]
        write = _sent(single, "w1", cost=0.5)
        assert storage.update_message(write.update, write.now, attempt=write.attempt, events=write.events) is True

        a, b = storage.get_message(batched), storage.get_message(single)
        assert a is not None and b is not None
        fields = ("status", "channel", "provider_message_id", "cost", "attempt_count", "channel_attempts",
                  "updated_at", "lease_owner", "lease_expires_at")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert [(e.type, e.at, dict(e.data)) for e in storage.get_events(batched)][1:] == \
            [(e.type, e.at, dict(e.data)) for e in storage.get_events(single)][1:]

    def test_every_field_of_attempts_and_events_reads_back_as_written(self, batch_updates: BatchUpdates,
                                                                      storage: StorageBackend) -> None:
        """Times that are not the write's own, fields left empty, data that is absent: a backend
        that sends the common values once (the write's time, its message id) must still store
        the uncommon ones exactly."""
        failed, sent = claimed(storage, "w1"), claimed(storage, "w1")
        attempt = make_attempt(failed, now=T0 + 0.75, latency=0.125, outcome=Outcome.PERMANENT,
                               error_code="21211", error_message="Invalid 'To' number", cost=0.0)
        failing = MessageWrite(
            update=MessageUpdate(message_id=failed, status=Status.FAILED, expected_owner="w1",
                                 last_error="SMS: invalid number [21211]", clear_secret=True),
            now=T0 + 2, attempt=attempt,
            events=(Event(type="attempt", message_id=failed, at=T0 + 0.75, data={"latency_ms": 125.0}),
                    Event(type="failed", message_id=failed, at=T0 + 2)))

        assert batch_updates.update_messages([failing, _sent(sent, "w1", cost=0.0)]) == [True, True]

        assert storage.get_attempts(failed) == [attempt]
        assert [(e.type, e.message_id, e.at, dict(e.data)) for e in storage.get_events(failed)][1:] == [
            ("attempt", failed, T0 + 0.75, {"latency_ms": 125.0}), ("failed", failed, T0 + 2, {})]
        m = storage.get_message(failed)
        assert m is not None
        assert (m.status, m.updated_at, m.last_error, m.cost, m.secret) == (
            Status.FAILED, T0 + 2, "SMS: invalid number [21211]", 0.0, None)
        (a,) = storage.get_attempts(sent)
        assert (a.cost, a.finished_at, a.started_at) == (0.0, T0 + 1, T0 + 1 - 0.05)

    def test_an_empty_batch_is_nothing(self, batch_updates: BatchUpdates) -> None:
        assert batch_updates.update_messages([]) == []
