"""The outcome writer's promises: outcomes gathered while a write runs go in the next call, at most
``limit`` wait, an outcome the store could not write is handed on as lost (never dropped), stop
writes what was handed over, and the dispatcher keeps a message leased until its outcome is written.

A store blocked on an event stands for a slow database; assertions are on calls, counts and
states, never on durations.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from otpagent import MessageRequest, Status
from otpagent.model import Event
from otpagent.outcomewriter import MAX_BATCH, OutcomeWriter
from otpagent.protocols import MessageUpdate, MessageWrite
from tests.conftest import wait_for


def write(mid: str) -> MessageWrite:
    return MessageWrite(update=MessageUpdate(message_id=mid, status=Status.SENT), now=1.0,
                        events=(Event(type="sent", message_id=mid, at=1.0),))


class SlowStore:
    """Records each ``update_messages`` call; blocks in it while ``gate`` is clear."""

    def __init__(self, answer: Any = True) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.answer = answer

    def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        self.calls.append([w.update.message_id for w in writes])
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return [self.answer(w) if callable(self.answer) else self.answer for w in writes]


@pytest.fixture
def store() -> Iterator[SlowStore]:
    store = SlowStore()
    yield store
    store.gate.set()  # no writer thread stays blocked after the test


def writer_for(store: SlowStore, limit: int = 100) -> tuple[OutcomeWriter, dict[str, Any]]:
    outcomes: dict[str, Any] = {}
    writer = OutcomeWriter(store, limit=limit, on_lost=outcomes.__setitem__)
    writer.start()
    return writer, outcomes


def done(outcomes: dict[str, Any], mid: str) -> Any:
    return lambda applied: outcomes.__setitem__(mid, applied)


def test_outcomes_that_gather_during_a_write_go_together_in_the_next(store: SlowStore) -> None:
    writer, outcomes = writer_for(store)
    writer.submit(write("m0"), done(outcomes, "m0"))
    assert store.entered.wait(10)

    for i in range(1, 6):
        writer.submit(write(f"m{i}"), done(outcomes, f"m{i}"))
    assert writer.pending == 6
    store.gate.set()

    assert wait_for(lambda: writer.pending == 0)
    assert store.calls == [["m0"], ["m1", "m2", "m3", "m4", "m5"]]
    assert outcomes == {f"m{i}": True for i in range(6)}
    assert writer.stop(10)


def test_a_call_writes_at_most_max_batch_outcomes_and_none_is_left_out(store: SlowStore) -> None:
    writer, outcomes = writer_for(store, limit=1000)
    writer.submit(write("m0"), done(outcomes, "m0"))
    assert store.entered.wait(10)
    for i in range(1, MAX_BATCH + 44):
        writer.submit(write(f"m{i}"), done(outcomes, f"m{i}"))
    store.gate.set()
    assert writer.stop(10)

    assert [len(call) for call in store.calls] == [1, MAX_BATCH, 43]
    assert [mid for call in store.calls for mid in call] == [f"m{i}" for i in range(MAX_BATCH + 44)]
    assert len(outcomes) == MAX_BATCH + 44


def test_a_worker_waits_for_room_when_limit_outcomes_wait(store: SlowStore) -> None:
    writer, outcomes = writer_for(store, limit=2)
    writer.submit(write("m0"), done(outcomes, "m0"))
    assert store.entered.wait(10)
    writer.submit(write("m1"), done(outcomes, "m1"))  # 2 waiting: still room
    third = threading.Thread(target=writer.submit, args=(write("m2"), done(outcomes, "m2")), daemon=True)

    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third outcome waits while two are unwritten"
    store.gate.set()
    third.join(10)

    assert not third.is_alive()
    assert wait_for(lambda: writer.pending == 0)
    assert sorted(outcomes) == ["m0", "m1", "m2"]
    assert writer.stop(10)


def test_an_outcome_the_store_could_not_write_is_handed_on_as_lost_and_the_others_are_not() -> None:
    failure = sqlite3.OperationalError("disk I/O error")
    store = SlowStore(answer=lambda w: failure if w.update.message_id == "bad" else w.update.message_id == "mine")
    store.gate.set()
    writer, outcomes = writer_for(store)

    writer.submit(write("mine"), done(outcomes, "mine"))
    writer.submit(write("bad"), done(outcomes, "bad"))
    writer.submit(write("theirs"), done(outcomes, "theirs"))
    assert writer.stop(10)

    assert outcomes == {"mine": True, "bad": failure, "theirs": False}


def test_when_the_whole_call_raises_every_outcome_of_it_is_lost() -> None:
    class Broken:
        def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
            raise sqlite3.OperationalError("database is locked")

    outcomes: dict[str, Any] = {}
    writer = OutcomeWriter(Broken(), limit=10, on_lost=outcomes.__setitem__)
    writer.start()
    writer.submit(write("a"), done(outcomes, "a"))
    writer.submit(write("b"), done(outcomes, "b"))
    assert writer.stop(10)

    assert set(outcomes) == {"a", "b"}
    assert all(isinstance(v, sqlite3.OperationalError) for v in outcomes.values())


def test_a_failing_follow_up_costs_the_others_nothing(store: SlowStore) -> None:
    writer, outcomes = writer_for(store)

    def explode(applied: bool) -> None:
        raise RuntimeError("a sink blew up")

    writer.submit(write("first"), done(outcomes, "first"))
    assert store.entered.wait(10)
    writer.submit(write("x"), explode)
    writer.submit(write("y"), done(outcomes, "y"))
    store.gate.set()
    assert writer.stop(10)

    assert outcomes == {"first": True, "y": True}
    assert store.calls == [["first"], ["x", "y"]]


def test_stop_writes_what_was_handed_over_and_a_late_outcome_is_written_at_once(store: SlowStore) -> None:
    writer, outcomes = writer_for(store)
    writer.submit(write("m0"), done(outcomes, "m0"))
    assert store.entered.wait(10)
    writer.submit(write("m1"), done(outcomes, "m1"))
    stopper = threading.Thread(target=writer.stop, args=(10,), daemon=True)
    stopper.start()
    store.gate.set()
    stopper.join(10)

    assert outcomes == {"m0": True, "m1": True}
    assert not writer.running
    writer.submit(write("late"), done(outcomes, "late"))  # an abandoned call's timeout, after stop

    assert outcomes["late"] is True
    assert store.calls[-1] == ["late"]


def test_the_dispatcher_keeps_a_message_in_hand_until_its_outcome_is_written(make_agent: Any) -> None:
    agent = make_agent(storage={"backend": "memory"}, dispatcher={"workers": 2, "poll_interval_seconds": 0.05})
    storage = agent.storage
    real = storage.update_messages
    gate, entered = threading.Event(), threading.Event()

    def slow(writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        entered.set()
        assert gate.wait(30)
        return real(writes)

    storage.update_messages = slow  # type: ignore[method-assign]
    try:
        message_id = agent.send_message(MessageRequest(phone_number="+447700900124", content="x", priority="HIGH"))
        agent.start_processing()
        assert entered.wait(10)

        assert agent.dispatcher.pool is not None
        assert wait_for(lambda: agent.dispatcher.pool.busy == 0)  # type: ignore[union-attr]
        assert agent.dispatcher.inflight == 1, "sent, its outcome not written: still in hand"
        assert agent.dispatcher.outcomes_unwritten == 1
        assert agent.get_metrics()["this_process"]["outcomes_unwritten"] == 1
        assert agent.get_delivery_report(message_id).status is Status.SENDING
        assert agent.dispatcher.counters["sent"] == 0, "counted only once written"
        assert agent.wait_until_idle(0.1) is False
    finally:
        gate.set()

    assert agent.wait_until_idle(10)
    assert agent.get_delivery_report(message_id).status is Status.SENT
    assert agent.dispatcher.counters["sent"] == 1
