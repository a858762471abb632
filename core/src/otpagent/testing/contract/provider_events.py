"""Contract: a provider event is de-duplicated and applied in one transaction, or not at all."""

from __future__ import annotations

import pytest

from otpagent.model import Event, Status
from otpagent.protocols import (
    Housekeeping,
    MessageUpdate,
    ProviderEvent,
    ProviderEventOutcome,
    ProviderEventResult,
    ProviderEvents,
    StorageBackend,
)
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, make_attempt, new

__all__ = ["ProviderEventContract"]

#: What a report of "delivered" may move an attempt on from.
BEFORE_DELIVERED: frozenset[Status | None] = frozenset({None, Status.SENDING, Status.SENT})
APPLIED = ProviderEventOutcome.APPLIED


def _sent(storage: StorageBackend, provider_id: str = "SM1") -> str:
    """A message sent through an attempt the provider knows as ``provider_id``; its id."""
    item = new()
    storage.enqueue([item], T0)
    mid = item.message.id
    storage.claim_due("w1", 1, 30.0, T0)
    storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, provider_message_id=provider_id), T0,
                           attempt=make_attempt(mid, provider_message_id=provider_id))
    return mid


def _delivered(event_id: str = "evt-1", provider_id: str = "SM1", source: str = "twilio") -> ProviderEvent:
    return ProviderEvent(source=source, event_id=event_id, provider_message_id=provider_id, status=Status.DELIVERED)


def _to_delivered(mid: str, provider_id: str = "SM1") -> MessageUpdate:
    return MessageUpdate(message_id=mid, status=Status.DELIVERED, expected_statuses=frozenset({Status.SENT}),
                         expected_provider_message_id=provider_id)


def _apply(provider_events: ProviderEvents, event: ProviderEvent, update: MessageUpdate | None = None,
           events: tuple[Event, ...] = (), *, now: float = T0 + 5,
           allowed_from: frozenset[Status | None] = BEFORE_DELIVERED) -> ProviderEventResult:
    return provider_events.apply_provider_event(event, allowed_from=allowed_from, update=update, events=events,
                                                now=now)


class ProviderEventContract(ContractBase):
    """The provider events capability (``apply_provider_event``)."""

    def test_an_event_moves_the_attempt_and_the_message_with_its_events(self, storage: StorageBackend,
                                                                        provider_events: ProviderEvents) -> None:
        mid = _sent(storage)
        delivered = Event(type="delivered", message_id=mid, at=T0 + 5, data={"provider_message_id": "SM1"})

        result = _apply(provider_events, _delivered(), _to_delivered(mid), (delivered,))

        assert result == ProviderEventResult(outcome=APPLIED, message_updated=True)
        attempt = storage.find_by_provider_id("SM1")
        assert attempt is not None
        assert (attempt.delivery_status, attempt.status_updated_at) == (Status.DELIVERED, T0 + 5)
        assert storage.get_message(mid).status is Status.DELIVERED  # type: ignore[union-attr]
        assert [e.type for e in storage.get_events(mid)][-1] == "delivered"

    def test_without_an_update_only_the_attempt_moves(self, storage: StorageBackend,
                                                      provider_events: ProviderEvents) -> None:
        mid = _sent(storage)

        result = _apply(provider_events, _delivered())

        assert result == ProviderEventResult(outcome=APPLIED, message_updated=False)
        assert storage.find_by_provider_id("SM1").delivery_status is Status.DELIVERED  # type: ignore[union-attr]
        assert storage.get_message(mid).status is Status.SENT  # type: ignore[union-attr]

    def test_a_replayed_event_changes_nothing(self, storage: StorageBackend, provider_events: ProviderEvents) -> None:
        mid = _sent(storage)
        _apply(provider_events, _delivered(event_id="evt-1"), allowed_from=frozenset(), now=T0 + 1)  # stale
        undelivered = ProviderEvent(source="twilio", event_id="evt-1", provider_message_id="SM1",
                                    status=Status.UNDELIVERED)
        fail = MessageUpdate(message_id=mid, status=Status.UNDELIVERED)

        result = _apply(provider_events, undelivered, fail, allowed_from=frozenset({None, Status.DELIVERED}))

        assert result == ProviderEventResult(outcome=ProviderEventOutcome.REPLAY)
        assert storage.find_by_provider_id("SM1").delivery_status is None  # type: ignore[union-attr]
        assert storage.get_message(mid).status is Status.SENT  # type: ignore[union-attr]

    def test_event_ids_are_unique_per_source(self, storage: StorageBackend, provider_events: ProviderEvents) -> None:
        _sent(storage)
        _apply(provider_events, _delivered(event_id="evt-1", source="sendgrid"), allowed_from=frozenset())

        result = _apply(provider_events, _delivered(event_id="evt-1", source="twilio"))

        assert result.outcome is APPLIED

    def test_a_late_event_is_stale_and_remembered(self, storage: StorageBackend,
                                                  provider_events: ProviderEvents) -> None:
        mid = _sent(storage)
        _apply(provider_events, _delivered(event_id="delivered"), _to_delivered(mid))
        late_sent = ProviderEvent(source="twilio", event_id="sent", provider_message_id="SM1", status=Status.SENT)
        update = MessageUpdate(message_id=mid, status=Status.SENT)

        first = _apply(provider_events, late_sent, update, allowed_from=frozenset({None, Status.SENDING}))
        again = _apply(provider_events, late_sent, update, allowed_from=frozenset({None, Status.SENDING}))

        assert (first.outcome, first.message_updated) == (ProviderEventOutcome.STALE, False)
        assert again.outcome is ProviderEventOutcome.REPLAY
        assert storage.find_by_provider_id("SM1").delivery_status is Status.DELIVERED  # type: ignore[union-attr]
        assert storage.get_message(mid).status is Status.DELIVERED  # type: ignore[union-attr]

    def test_an_unknown_provider_id_is_not_remembered(self, storage: StorageBackend,
                                                      provider_events: ProviderEvents) -> None:
        early = _apply(provider_events, _delivered(provider_id="SM-later"))
        mid = _sent(storage, provider_id="SM-later")

        later = _apply(provider_events, _delivered(provider_id="SM-later"), _to_delivered(mid, "SM-later"))

        assert early == ProviderEventResult(outcome=ProviderEventOutcome.UNKNOWN)
        assert later == ProviderEventResult(outcome=APPLIED, message_updated=True)

    def test_only_the_current_attempt_moves_the_message(self, storage: StorageBackend,
                                                        provider_events: ProviderEvents) -> None:
        mid = _sent(storage, provider_id="SM1")
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, provider_message_id="SM2"), T0 + 1,
                               attempt=make_attempt(mid, number=2, provider_message_id="SM2", now=T0 + 1))
        old_failed = ProviderEvent(source="twilio", event_id="e1", provider_message_id="SM1", status=Status.FAILED)
        fall_back = MessageUpdate(message_id=mid, status=Status.RETRYING, expected_statuses=frozenset({Status.SENT}),
                                  expected_provider_message_id="SM1")
        event = Event(type="fallback", message_id=mid, at=T0 + 5)

        result = _apply(provider_events, old_failed, fall_back, (event,), allowed_from=frozenset({None, Status.SENT}))

        assert result == ProviderEventResult(outcome=APPLIED, message_updated=False)
        assert storage.get_message(mid).status is Status.SENT  # type: ignore[union-attr]
        assert "fallback" not in [e.type for e in storage.get_events(mid)]
        attempts = {a.provider_message_id: a.delivery_status for a in storage.get_attempts(mid)}
        assert attempts == {"SM1": Status.FAILED, "SM2": None}

    def test_a_write_that_fails_remembers_nothing_so_the_retry_applies(self, storage: StorageBackend,
                                                                       provider_events: ProviderEvents) -> None:
        mid = _sent(storage)
        unstorable = Event(type="delivered", message_id=mid, at=T0 + 5, data={"not json": object()})
        storable = Event(type="delivered", message_id=mid, at=T0 + 6)

        with pytest.raises((TypeError, ValueError)):
            _apply(provider_events, _delivered(), _to_delivered(mid), (unstorable,))
        after_failure = (storage.find_by_provider_id("SM1"), storage.get_message(mid))
        retry = _apply(provider_events, _delivered(), _to_delivered(mid), (storable,), now=T0 + 6)

        attempt, message = after_failure
        assert attempt is not None and message is not None
        assert (attempt.delivery_status, message.status) == (None, Status.SENT)
        assert retry == ProviderEventResult(outcome=APPLIED, message_updated=True)
        assert storage.get_message(mid).status is Status.DELIVERED  # type: ignore[union-attr]

    def test_cleanup_forgets_old_event_ids(self, storage: StorageBackend, provider_events: ProviderEvents,
                                           housekeeping: Housekeeping) -> None:
        mid = _sent(storage)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT), T0 + 900)  # kept by cleanup
        nothing: frozenset[Status | None] = frozenset()
        _apply(provider_events, _delivered(event_id="old"), allowed_from=nothing, now=T0)
        _apply(provider_events, _delivered(event_id="new"), allowed_from=nothing, now=T0 + 500)

        counts = housekeeping.cleanup(T0 + 100, T0 + 1000)

        assert counts["seen_events"] == 1
        assert _apply(provider_events, _delivered(event_id="old"), now=T0 + 1000).outcome is APPLIED
        assert _apply(provider_events, _delivered(event_id="new"), now=T0 + 1000).outcome is \
            ProviderEventOutcome.REPLAY
