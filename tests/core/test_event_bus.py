"""The event bus hands each sink the event types it takes, and builds no event nobody takes."""

from __future__ import annotations

from typing import Any

import pytest

from otpagent.events import EventBus
from otpagent.model import Event


class Recorder:
    def __init__(self, event_types: Any = None) -> None:
        if event_types is not None:
            self.event_types = event_types
        self.seen: list[str] = []

    def emit(self, event: Event) -> None:
        self.seen.append(event.type)

    def close(self) -> None:
        pass


def _events(*types: str) -> list[Event]:
    return [Event(type=t, message_id="m1") for t in types]


def test_each_sink_gets_only_the_types_it_takes():
    attempts, everything = Recorder({"attempt"}), Recorder()
    bus = EventBus([attempts, everything])
    bus.publish(_events("queued", "attempt", "sent", "attempt"))
    bus.close()
    assert attempts.seen == ["attempt", "attempt"]
    assert everything.seen == ["queued", "attempt", "sent", "attempt"]


def test_a_type_no_sink_takes_is_not_wanted_nor_queued():
    attempts = Recorder(["attempt"])
    bus = EventBus([attempts])
    assert bus.wants("attempt") and not bus.wants("queued")
    bus.publish(_events("queued", "sent"))
    assert bus._queue.qsize() == 0, "dropped at publish, before the queue and the bus thread"
    assert bus.dropped == 0, "not taken is not dropped for lack of room"
    bus.add_sink(Recorder())
    assert bus.wants("queued"), "a sink taking every type was added"
    assert not EventBus([]).wants("attempt")


def test_event_types_that_are_not_a_collection_of_names_are_refused_naming_the_sink():
    with pytest.raises(TypeError, match="event sink Recorder: event_types must be a collection"):
        EventBus([Recorder("attempt")])


def test_a_sink_appended_to_the_list_directly_is_routed_too():
    bus = EventBus([Recorder({"attempt"})])
    late = Recorder()
    bus.sinks.append(late)
    assert bus.wants("queued")
    bus.publish(_events("queued"))
    bus.close()
    assert late.seen == ["queued"]
