"""Contract: update_message is conditional and atomic; attempts are always kept."""

from __future__ import annotations

import pytest

from otpagent.model import Event, MessageType, Outcome, Status
from otpagent.protocols import MessageUpdate, StorageBackend
from otpagent.testing.contract.base import ContractBase, claimed
from otpagent.testing.data import T0, make_attempt

__all__ = ["UpdateContract"]


class UpdateContract(ContractBase):
    """update_message is conditional and atomic; attempts are always kept."""

    def test_an_update_changes_the_given_fields_and_keeps_the_others(self, storage: StorageBackend) -> None:
        mid = claimed(storage, route=("SMS", "EMAIL"))
        update = MessageUpdate(message_id=mid, status=Status.SENT, channel="SMS", provider_message_id="SM1",
                               attempt_count=1, channel_attempts=1, add_cost=0.25)

        assert storage.update_message(update, T0 + 1) is True

        m = storage.get_message(mid)
        assert m is not None
        assert (m.status, m.channel, m.provider_message_id, m.attempt_count, m.cost) == (
            Status.SENT, "SMS", "SM1", 1, 0.25)
        assert m.route == ("SMS", "EMAIL")
        assert m.updated_at == T0 + 1
        assert (m.lease_owner, m.lease_expires_at) == (None, None)

    def test_cost_accumulates_and_route_can_be_replaced(self, storage: StorageBackend) -> None:
        mid = claimed(storage)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.RETRYING, add_cost=0.5, due_at=T0 + 9,
                                             route=("VOICE", "SMS"), route_index=1, last_error="busy"), T0)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.RETRYING, add_cost=0.25), T0)

        m = storage.get_message(mid)
        assert m is not None
        assert (m.cost, m.due_at, m.route, m.route_index, m.last_error) == (0.75, T0 + 9, ("VOICE", "SMS"), 1, "busy")

    def test_an_update_applies_only_from_an_expected_status(self, storage: StorageBackend) -> None:
        mid = claimed(storage)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.DELIVERED), T0)

        late = MessageUpdate(message_id=mid, status=Status.SENT, expected_statuses=frozenset({Status.SENDING}))

        assert storage.update_message(late, T0 + 1) is False
        assert storage.get_message(mid).status is Status.DELIVERED  # type: ignore[union-attr]

    def test_an_update_applies_only_for_the_lease_owner(self, storage: StorageBackend) -> None:
        mid = claimed(storage, worker="owner")

        theirs = MessageUpdate(message_id=mid, status=Status.SENT, expected_owner="other")
        mine = MessageUpdate(message_id=mid, status=Status.SENT, expected_owner="owner")

        assert storage.update_message(theirs, T0) is False
        assert storage.update_message(mine, T0) is True

    def test_keep_lease_keeps_the_owner_and_expiry(self, storage: StorageBackend) -> None:
        mid = claimed(storage, worker="owner")

        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENDING, keep_lease=True, attempt_count=1),
                               T0)

        m = storage.get_message(mid)
        assert m is not None
        assert (m.lease_owner, m.lease_expires_at, m.attempt_count) == ("owner", T0 + 30, 1)

    def test_an_attempt_is_recorded_even_when_the_update_does_not_apply(self, storage: StorageBackend) -> None:
        mid = claimed(storage, worker="owner")
        attempt = make_attempt(mid, outcome=Outcome.ACCEPTED, provider_message_id="SM9", cost=0.01)
        event = Event(type="sent", message_id=mid, at=T0)

        applied = storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, expected_owner="thief"), T0,
                                         attempt=attempt, events=[event])

        assert applied is False
        assert storage.get_attempts(mid) == [attempt]
        assert [e.type for e in storage.get_events(mid)] == ["queued"]

    def test_events_are_recorded_with_an_applied_update_in_order(self, storage: StorageBackend) -> None:
        mid = claimed(storage)
        events = [Event(type="attempt", message_id=mid, at=T0, data={"channel": "SMS"}),
                  Event(type="sent", message_id=mid, at=T0, data={"provider_message_id": "SM1"})]

        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT), T0,
                               attempt=make_attempt(mid), events=events)

        stored = storage.get_events(mid)
        assert [(e.type, dict(e.data)) for e in stored] == [
            ("queued", {"priority": "MEDIUM", "message_type": "notification"}),
            ("attempt", {"channel": "SMS"}),
            ("sent", {"provider_message_id": "SM1"}),
        ]
        assert all(e.id is not None for e in stored)

    def test_attempts_come_back_in_order_with_every_field(self, storage: StorageBackend) -> None:
        mid = claimed(storage)
        first = make_attempt(mid, number=1, outcome=Outcome.TRANSIENT, error_code="20429", error_message="rate", now=T0)
        second = make_attempt(mid, number=2, channel="EMAIL", outcome=Outcome.ACCEPTED, provider_message_id="em-1",
                              cost=0.001, now=T0 + 2)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENDING, keep_lease=True), T0, attempt=first)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT), T0 + 2, attempt=second)

        assert storage.get_attempts(mid) == [first, second]

    def test_clear_secret_removes_the_otp_code(self, storage: StorageBackend) -> None:
        keep = claimed(storage, message_type=MessageType.OTP, secret="123456")
        clear = claimed(storage, message_type=MessageType.OTP, secret="654321")

        storage.update_message(MessageUpdate(message_id=keep, status=Status.RETRYING, due_at=T0 + 1), T0)
        storage.update_message(MessageUpdate(message_id=clear, status=Status.SENT, clear_secret=True), T0)

        assert storage.get_message(keep).secret == "123456"  # type: ignore[union-attr]
        assert storage.get_message(clear).secret is None  # type: ignore[union-attr]

    def test_an_update_applies_only_for_the_expected_provider_id(self, storage: StorageBackend) -> None:
        mid = claimed(storage)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, provider_message_id="SM2"), T0)

        stale = MessageUpdate(message_id=mid, status=Status.UNDELIVERED, expected_provider_message_id="SM1")
        current = MessageUpdate(message_id=mid, status=Status.DELIVERED, expected_provider_message_id="SM2")

        assert storage.update_message(stale, T0 + 1) is False
        assert storage.update_message(current, T0 + 2) is True
        assert storage.get_message(mid).status is Status.DELIVERED  # type: ignore[union-attr]

    def test_an_update_of_an_unknown_message_does_not_apply(self, storage: StorageBackend) -> None:
        event = Event(type="sent", message_id="nope", at=T0)

        assert storage.update_message(MessageUpdate(message_id="nope", status=Status.SENT), T0, events=[event]) is False
        assert storage.get_events("nope") == []

    def test_an_event_that_cannot_be_stored_rolls_back_the_whole_update(self, storage: StorageBackend) -> None:
        mid = claimed(storage, worker="owner")
        unstorable = Event(type="sent", message_id=mid, at=T0, data={"not json": object()})

        with pytest.raises((TypeError, ValueError)):
            storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, expected_owner="owner"), T0,
                                   attempt=make_attempt(mid), events=[unstorable])

        m = storage.get_message(mid)
        assert m is not None
        assert (m.status, m.lease_owner) == (Status.SENDING, "owner")
        assert storage.get_attempts(mid) == []
