"""SQLite's batch of outcomes: one merged piece of the group commit, and write by write when
that piece fails, so the write at fault fails alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otpagent.model import Event, Status
from otpagent.protocols import MessageUpdate, MessageWrite
from otpagent.storage.sqlite import SqliteStorage
from otpagent.testing.contract.base import claimed
from otpagent.testing.data import T0, make_attempt


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Any]:
    store = SqliteStorage(tmp_path / "o.db")
    store.pieces = []
    grouped_each = store._grouped_each

    def recording(works: Any) -> Any:
        store.pieces.append(len(works))
        return grouped_each(works)

    store._grouped_each = recording
    yield store
    store.close()


def sent(message_id: str, owner: str = "w1", data: Any = None) -> MessageWrite:
    return MessageWrite(
        update=MessageUpdate(message_id=message_id, status=Status.SENT, expected_owner=owner, channel="SMS",
                             provider_message_id=f"SM{message_id[-4:]}", attempt_count=1, channel_attempts=1),
        now=T0 + 1, attempt=make_attempt(message_id, now=T0 + 1),
        events=(Event(type="sent", message_id=message_id, at=T0 + 1, data=data or {"channel": "SMS"}),))


def test_a_batch_is_one_merged_piece(storage: Any) -> None:
    ids = [claimed(storage) for _ in range(3)]
    theirs = claimed(storage, "w2")

    assert storage.update_messages([sent(i) for i in ids] + [sent(theirs)]) == [True, True, True, False]

    assert storage.pieces == []  # no savepoint a write
    for message_id in ids:
        assert storage.get_message(message_id).status is Status.SENT
        assert [e.type for e in storage.get_events(message_id)] == ["queued", "sent"]
    assert storage.get_message(theirs).status is Status.SENDING
    assert len(storage.get_attempts(theirs)) == 1  # recorded whether or not the update applied
    assert [e.type for e in storage.get_events(theirs)] == ["queued"]


def test_a_write_that_fails_fails_alone_and_the_others_land(storage: Any) -> None:
    ids = [claimed(storage) for _ in range(3)]
    writes = [sent(ids[0]), sent(ids[1], data={"not json": object()}), sent(ids[2])]

    results = storage.update_messages(writes)

    assert results[0] is True and results[2] is True
    assert isinstance(results[1], TypeError)
    assert storage.pieces == [3]  # the merged piece was rolled back, then each under its savepoint
    assert storage.get_message(ids[1]).status is Status.SENDING
    assert storage.get_attempts(ids[1]) == []
    for message_id in (ids[0], ids[2]):
        assert storage.get_message(message_id).status is Status.SENT
        assert len(storage.get_attempts(message_id)) == 1  # not twice: the merged piece left nothing
        assert [e.type for e in storage.get_events(message_id)] == ["queued", "sent"]


def test_a_merged_batch_finds_a_message_still_in_intake(storage: Any) -> None:
    """A cancel written in the same batch as a send, for a message enqueued just before it."""
    from otpagent.testing.contract.base import new

    other = claimed(storage)
    late = new()
    storage.enqueue([late], T0)  # a lone enqueue: an intake row until a claim or read moves it
    cancel = MessageWrite(update=MessageUpdate(message_id=late.message.id, status=Status.CANCELLED,
                                               expected_statuses=frozenset({Status.QUEUED})),
                          now=T0 + 1, events=(Event(type="cancelled", message_id=late.message.id, at=T0 + 1),))

    assert storage.update_messages([sent(other), cancel]) == [True, True]
    assert storage.pieces == []
    assert storage.get_message(late.message.id).status is Status.CANCELLED
    assert [e.type for e in storage.get_events(late.message.id)] == ["queued", "cancelled"]
