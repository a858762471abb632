"""Group commit on PostgreSQL: outcomes recorded by concurrent workers share one transaction.

Each test queues writes from several threads while the test holds the leader's lock, so every
write is waiting when the lock is released and they are committed together, as one group.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from otpagent.model import Event, Status
from otpagent.protocols import MessageUpdate, MessageWrite
from otpagent.testing import T0, make_attempt, new
from otpagent_postgres import groupcommit
from otpagent_postgres.groupcommit import GroupCommit, GroupedWrite
from otpagent_postgres.queue import update_message as queue_update

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def queued_behind_leader(group: GroupCommit, calls: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], list[int]]:
    """Start every call while the lead is held; release once all are queued. Returns
    what each call returned (or raised) and the size of every group committed meanwhile."""
    sizes: list[int] = []
    commit = group._commit

    def counting(batch: list[GroupedWrite[Any]]) -> None:
        sizes.append(len(batch))
        commit(batch)

    group._commit = counting  # type: ignore[method-assign]
    out: dict[str, Any] = {}

    def call(name: str, fn: Callable[[], Any]) -> None:
        try:
            out[name] = fn()
        except Exception as exc:  # recorded for the test to inspect
            out[name] = exc

    threads = [threading.Thread(target=call, args=item) for item in calls.items()]
    with group._writes.held():
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while group._writes.queued < len(calls) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert group._writes.queued == len(calls), "every call queued its write"
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    return out, sizes


def claimed(store: Any, count: int) -> list[Any]:
    store.enqueue([new() for _ in range(count)], T0)
    return list(store.claim_due("w1", count, 30.0, T0))


def sent(message_id: str, owner: str = "w1") -> tuple[MessageUpdate, Any, list[Event]]:
    return (MessageUpdate(message_id=message_id, status=Status.SENT, expected_owner=owner),
            make_attempt(message_id, provider_message_id=f"SM-{message_id}"),
            [Event(type="sent", message_id=message_id, at=T0 + 1)])


def test_concurrent_outcomes_commit_as_one_group_and_each_caller_gets_its_own_answer(open_store: Any) -> None:
    store = open_store()
    messages = claimed(store, 6)
    calls = {}
    for index, m in enumerate(messages):
        update, attempt, events = sent(m.id, owner="w1" if index % 3 else "someone-else")
        calls[m.id] = (lambda u=update, a=attempt, e=events: store.update_message(u, T0 + 1, attempt=a, events=e))

    out, sizes = queued_behind_leader(store._group, calls)

    assert sizes == [6]
    for index, m in enumerate(messages):
        mine = bool(index % 3)
        assert out[m.id] is mine
        assert store.get_message(m.id).status is (Status.SENT if mine else Status.SENDING)
        assert len(store.get_attempts(m.id)) == 1  # recorded whether or not the update applied
        assert [e.type for e in store.get_events(m.id)].count("sent") == (1 if mine else 0)


def test_a_write_that_fails_fails_alone_and_the_rest_of_its_group_lands(open_store: Any) -> None:
    store = open_store()
    messages = claimed(store, 3)
    calls: dict[str, Callable[[], Any]] = {}
    for m in messages:
        update, attempt, events = sent(m.id)
        calls[m.id] = lambda u=update, a=attempt, e=events: store.update_message(u, T0 + 1, attempt=a, events=e)

    def broken(conn: Any, _uncertain: bool) -> None:
        conn.execute("SELECT 1 / 0")

    calls["broken"] = lambda: store._group.run(GroupedWrite(broken, (b"SELECT 1 / 0", ()), lambda cur: None))

    out, sizes = queued_behind_leader(store._group, calls)

    assert sizes == [4]
    assert isinstance(out["broken"], psycopg.errors.DivisionByZero)
    for m in messages:
        assert out[m.id] is True
        assert store.get_message(m.id).status is Status.SENT
        assert len(store.get_attempts(m.id)) == 1
        assert [e.type for e in store.get_events(m.id)].count("sent") == 1


def test_a_group_retried_after_an_uncertain_commit_records_nothing_twice(open_store: Any) -> None:
    store = open_store()
    messages = claimed(store, 4)
    real_run = store._db.run

    def commit_then_lose_the_answer(work: Any, *, one_statement: bool = False, uncertain: bool = False) -> Any:
        """The first try commits, but its answer is lost: Database.run tries again, uncertain."""
        real_run(work, one_statement=one_statement, uncertain=uncertain)
        return real_run(work, uncertain=True)

    store._db.run = commit_then_lose_the_answer
    calls = {}
    for m in messages:
        update, attempt, events = sent(m.id)
        calls[m.id] = lambda u=update, a=attempt, e=events: store.update_message(u, T0 + 1, attempt=a, events=e)

    out, sizes = queued_behind_leader(store._group, calls)
    store._db.run = real_run

    assert sizes == [4]
    for m in messages:
        assert out[m.id] is True
        assert store.get_message(m.id).status is Status.SENT
        assert len(store.get_attempts(m.id)) == 1
        assert [e.type for e in store.get_events(m.id)].count("sent") == 1


def test_a_group_whose_retry_fails_after_an_uncertain_commit_checks_each_write_alone(open_store: Any) -> None:
    """The first try commits and loses its answer; the retry, told so, fails for another reason
    (one write's check raises). Each write then runs alone, and must check first: run blindly,
    every attempt row would be written a second time."""
    store = open_store()
    messages = claimed(store, 3)
    real_run = store._db.run

    def commit_then_fail_the_uncertain_retry(work: Any, *, one_statement: bool = False,
                                             uncertain: bool = False) -> Any:
        store._db.run = real_run  # the group's run only: each write's run alone is the real one
        real_run(work, one_statement=one_statement, uncertain=uncertain)  # applied, answer lost

        def checks_then_fail(conn: Any, _uncertain: bool) -> Any:
            work(conn, True)
            raise RuntimeError("one write's check failed")

        return real_run(checks_then_fail, uncertain=True)

    calls = {}
    for m in messages:
        update, attempt, events = sent(m.id)
        calls[m.id] = lambda u=update, a=attempt, e=events: store.update_message(u, T0 + 1, attempt=a, events=e)
    store._db.run = commit_then_fail_the_uncertain_retry
    try:
        out, sizes = queued_behind_leader(store._group, calls)
    finally:
        store._db.run = real_run

    assert sizes == [3]
    for m in messages:
        assert not isinstance(out[m.id], Exception)
        assert store.get_message(m.id).status is Status.SENT
        assert len(store.get_attempts(m.id)) == 1
        assert [e.type for e in store.get_events(m.id)].count("sent") == 1


def _varied_updates(message_id: str) -> list[tuple[MessageUpdate, bool]]:
    """Updates touching every field and condition the merged statement handles, and whether
    each is of the kind that applies (the rest must be refused by their conditions)."""
    return [
        (MessageUpdate(message_id=message_id, status=Status.SENT, expected_owner="w1", channel="SMS",
                       provider_message_id="SM-x", attempt_count=1, add_cost=0.25, channel_attempts=1, last_error="",
                       route=("SMS", "EMAIL")), True),
        (MessageUpdate(message_id=message_id, status=Status.RETRYING, expected_owner="w1", due_at=T0 + 30,
                       route_index=1, last_error="SMS: busy", keep_lease=True), True),
        (MessageUpdate(message_id=message_id, status=Status.FAILED, expected_owner="w1", clear_secret=True,
                       last_error="gone", expected_statuses=frozenset({Status.SENDING, Status.QUEUED})), True),
        (MessageUpdate(message_id=message_id, status=Status.SENT, expected_owner="w2"), False),
        (MessageUpdate(message_id=message_id, status=Status.SENT, expected_statuses=frozenset({Status.DELIVERED})),
         False),
        (MessageUpdate(message_id=message_id, status=Status.DELIVERED, expected_provider_message_id="SM-other"), False),
    ]


def _stored(store: Any, message_id: str) -> tuple[Any, ...]:
    m = store.get_message(message_id)
    attempts = [(a.number, a.channel, a.outcome, a.provider_message_id, a.cost) for a in store.get_attempts(message_id)]
    events = [(e.type, dict(e.data)) for e in store.get_events(message_id)]
    return (m.status, m.due_at, m.route, m.route_index, m.channel_attempts, m.attempt_count, m.channel,
            m.provider_message_id, m.last_error, m.cost, m.secret, m.lease_owner, m.lease_expires_at, attempts, events)


def test_merged_outcomes_leave_exactly_what_the_same_outcomes_leave_one_by_one(open_store: Any) -> None:
    store = open_store()
    kinds = len(_varied_updates("x"))
    store.enqueue([new(secret="enc1:sealed") for _ in range(2 * kinds)], T0)
    messages = list(store.claim_due("w1", 2 * kinds, 30.0, T0))
    merged, alone = messages[:kinds], messages[kinds:]

    def outcome(m: Any, index: int) -> tuple[MessageUpdate, Any, list[Event]]:
        update, _ = _varied_updates(m.id)[index]
        return update, make_attempt(m.id, number=index + 1, cost=0.5 * index), [
            Event(type="attempt", message_id=m.id, at=T0 + 1, data={"n": index}),
            Event(type=update.status.value, message_id=m.id, at=T0 + 1)]

    calls = {}
    for index, m in enumerate(merged):
        update, attempt, events = outcome(m, index)
        calls[m.id] = lambda u=update, a=attempt, e=events: store.update_message(u, T0 + 1, attempt=a, events=e)
    out, sizes = queued_behind_leader(store._group, calls)
    one_by_one = []
    for index, m in enumerate(alone):
        update, attempt, events = outcome(m, index)
        one_by_one.append(store._db.run(lambda conn, u, update=update, attempt=attempt, events=events:
                                        queue_update(conn, update, T0 + 1, attempt, events, u)))

    assert sizes == [kinds]
    assert [out[m.id] for m in merged] == one_by_one == [applies for _, applies in _varied_updates("x")]
    for first, second in zip(merged, alone, strict=True):
        assert _stored(store, first.id) == _stored(store, second.id)


def test_two_outcomes_for_one_message_in_one_group_apply_in_turn(open_store: Any) -> None:
    store = open_store()
    (m,) = claimed(store, 1)
    first = MessageUpdate(message_id=m.id, status=Status.SENT, expected_owner="w1")
    second = MessageUpdate(message_id=m.id, status=Status.FAILED, expected_owner="w1")
    calls = {"first": lambda: store.update_message(first, T0 + 1, attempt=make_attempt(m.id)),
             "second": lambda: store.update_message(second, T0 + 1, attempt=make_attempt(m.id, number=2))}

    out, sizes = queued_behind_leader(store._group, calls)

    assert sizes == [2]
    assert sorted([out["first"], out["second"]]) == [False, True]  # whichever ran first holds the lease
    assert len(store.get_attempts(m.id)) == 2


class _Abort(BaseException):
    """Stands in for KeyboardInterrupt or SystemExit raised in the committing thread."""


def test_when_the_leader_is_interrupted_every_write_of_its_group_hears_so(open_store: Any) -> None:
    store = open_store()
    (m,) = claimed(store, 1)

    def interrupted(_conn: Any, _uncertain: bool) -> None:
        raise _Abort

    def read_interrupted(_cursor: Any) -> None:
        raise _Abort

    def caught(call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return call()
            except _Abort:  # raised in whichever thread led the group
                return "interrupted"
        return run

    calls = {
        "odd one": caught(lambda: store._group.run(GroupedWrite(interrupted, (b"SELECT 1", ()), read_interrupted))),
        "outcome": caught(lambda: store.update_message(
            MessageUpdate(message_id=m.id, status=Status.SENT, expected_owner="w1"), T0 + 1,
            attempt=make_attempt(m.id))),
    }

    out, sizes = queued_behind_leader(store._group, calls)

    assert sizes == [2]
    kinds = sorted("interrupted" if r == "interrupted" else type(r).__name__ for r in out.values())
    assert kinds == ["RuntimeError", "interrupted"], out  # the other write never passes for applied


def test_a_batch_of_outcomes_is_one_group_written_by_one_statement(open_store: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()
    messages = claimed(store, 5)
    plans: list[list[int]] = []
    plan = groupcommit._statements

    def recorded(group: list[GroupedWrite[Any]]) -> Any:
        planned = plan(group)
        plans.extend(indices for indices, _, _ in planned)
        return planned

    monkeypatch.setattr(groupcommit, "_statements", recorded)
    writes = []
    for index, m in enumerate(messages):
        update, attempt, events = sent(m.id, owner="w1" if index != 2 else "someone-else")
        writes.append(MessageWrite(update=update, now=T0 + 1, attempt=attempt, events=events))

    results = store.update_messages(writes)

    assert results == [True, True, False, True, True]
    assert plans == [[0, 1, 2, 3, 4]], "the five outcomes share one statement"
    statuses = [store.get_message(m.id).status for m in messages]
    assert statuses == [Status.SENT, Status.SENT, Status.SENDING, Status.SENT, Status.SENT]
    assert all(len(store.get_attempts(m.id)) == 1 for m in messages)
