"""Write gathering: calls run on one thread, each parked write committed with the others'."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path
from typing import Any

import pytest

from otpagent.errors import LimitsRefused
from otpagent.protocols.otp import OtpVerifyOutcome
from otpagent.storage import gathering
from otpagent.storage.gathering import Outcome, park, run_gathered
from otpagent.storage.sqlite import SqliteStorage


class Recorder:
    """A backend's ``run_many``: records each group it was given; items are ``(name, value)``
    and an item whose value is an exception fails alone."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []

    def run_many(self, items: list[tuple[str, Any]]) -> list[Outcome]:
        self.groups.append([name for name, _ in items])
        return [(False, value) if isinstance(value, Exception) else (True, value) for _, value in items]


def test_each_round_commits_every_parked_write_as_one_group() -> None:
    store = Recorder()

    def call(n: int) -> list[Any]:
        first = park(store, store.run_many, (f"a{n}", n))
        second = park(store, store.run_many, (f"b{n}", n * 10))
        return [first, second]

    outcomes = run_gathered([lambda n=n: call(n) for n in range(4)])

    assert outcomes == [(True, [n, n * 10]) for n in range(4)]
    assert store.groups == [["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]]


def test_a_failed_write_raises_in_its_own_call_only() -> None:
    store = Recorder()

    def call(value: Any) -> Any:
        return park(store, store.run_many, ("w", value))

    outcomes = run_gathered([lambda: call(1), lambda: call(ValueError("refused")), lambda: call(3)])

    assert outcomes[0] == (True, 1) and outcomes[2] == (True, 3)
    assert outcomes[1][0] is False and str(outcomes[1][1]) == "refused"
    assert store.groups == [["w", "w", "w"]]


def test_a_commit_that_fails_fails_every_write_of_its_group_and_the_calls_unwind() -> None:
    unwound: list[int] = []

    def broken(items: list[Any]) -> list[Outcome]:
        raise OSError("disk I/O error")

    def call(n: int) -> None:
        try:
            park("db", broken, n)
        finally:
            unwound.append(n)

    outcomes = run_gathered([lambda: call(1), lambda: call(2)])

    assert [type(exc) for ok, exc in outcomes if not ok] == [OSError, OSError]
    assert sorted(unwound) == [1, 2]


def test_writes_of_different_backends_are_committed_apart() -> None:
    one, two = Recorder(), Recorder()
    outcomes = run_gathered([lambda: park(one, one.run_many, ("x", 1)), lambda: park(two, two.run_many, ("y", 2)),
                             lambda: park(one, one.run_many, ("z", 3))])

    assert outcomes == [(True, 1), (True, 2), (True, 3)]
    assert one.groups == [["x", "z"]] and two.groups == [["y"]]


def test_calls_without_writes_and_calls_that_raise_before_writing() -> None:
    def fails() -> None:
        raise KeyError("no such thing")

    outcomes = run_gathered([lambda: 7, fails])

    assert outcomes[0] == (True, 7)
    assert outcomes[1][0] is False and isinstance(outcomes[1][1], KeyError)


def test_each_call_keeps_its_own_context() -> None:
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
    store = Recorder()

    def call(name: str) -> tuple[str, str]:
        before = who.get()
        park(store, store.run_many, ("w", None))  # another call runs while this one waits
        return before, who.get()

    calls = []
    for name in ("ann", "bob"):
        context = contextvars.copy_context()
        context.run(who.set, name)
        calls.append(lambda c=context, n=name: c.run(call, n))

    assert run_gathered(calls) == [(True, ("ann", "ann")), (True, ("bob", "bob"))]


def test_park_outside_a_gathered_call_and_nesting_are_refused() -> None:
    assert not gathering.active()
    with pytest.raises(RuntimeError, match="outside a gathered call"):
        park("db", Recorder().run_many, 1)
    outcomes = run_gathered([lambda: run_gathered([lambda: 1])])
    assert outcomes[0][0] is False and "inside a gathered call" in str(outcomes[0][1])
    assert not gathering.active()  # the driver is forgotten when the batch ends


def test_a_call_that_never_stops_writing_is_stopped_with_an_error() -> None:
    store = Recorder()

    def endless() -> None:
        for _ in range(gathering.MAX_ROUNDS + 10):
            park(store, store.run_many, ("w", 1))

    outcomes = run_gathered([endless, lambda: 5])

    assert outcomes[1] == (True, 5)
    assert outcomes[0][0] is False and "more than" in str(outcomes[0][1])


def test_another_threads_writes_are_not_gathered() -> None:
    seen: list[bool] = []
    store = Recorder()

    def elsewhere() -> None:
        seen.append(gathering.active())

    def call() -> None:
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        park(store, store.run_many, ("w", 1))

    assert run_gathered([call]) == [(True, None)]
    assert seen == [False]


# -- SQLite: the OTP writes of a batch are one group commit ------------------------------------


def counting_groups(store: Any) -> list[int]:
    """The size of every group ``store`` commits from now on."""
    groups: list[int] = []
    commit_group = store._commit_group

    def counting(conn: Any, batch: list[Any]) -> None:
        groups.append(len(batch))
        commit_group(conn, batch)

    store._commit_group = counting
    return groups


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    store = SqliteStorage(tmp_path / "g.db")
    store.groups = counting_groups(store)
    yield store
    store.close()


def test_sqlite_commits_a_batchs_buckets_as_one_group_and_a_refusal_stays_its_own(storage: Any) -> None:
    def take(key: str) -> list[float]:
        return storage.acquire_all([(key, 60.0, 1)], 1000.0)

    storage.acquire_all([("spent", 60.0, 1)], 1000.0)  # this bucket is empty now
    storage.groups.clear()

    outcomes = run_gathered([lambda: take("a"), lambda: take("spent"), lambda: take("b")])

    assert outcomes[0] == (True, [0.0]) and outcomes[2] == (True, [0.0])
    assert outcomes[1][0] is True and outcomes[1][1][0] > 0  # refused: its wait
    assert storage.groups == [3]
    assert storage.acquire("a", 60.0, 1, 1000.0) > 0  # each grant was committed
    assert storage.acquire("b", 60.0, 1, 1000.0) > 0


def test_sqlite_otp_checks_of_a_batch_are_one_group(storage: Any) -> None:
    def check(recipient: str, buckets: list[tuple[str, float, int]]) -> OtpVerifyOutcome:
        return storage.verify_otp(recipient, "login", b"\0" * 32, max_attempts=3, now=1000.0, buckets=buckets)

    storage.acquire_all([("full", 60.0, 1)], 1000.0)
    storage.groups.clear()
    outcomes = run_gathered([lambda: check("+447700900001", []), lambda: check("+447700900002", [("full", 60.0, 1)]),
                             lambda: check("+447700900003", [])])

    assert outcomes[0] == (True, OtpVerifyOutcome.NO_LIVE_CODE) and outcomes[2] == (True, OtpVerifyOutcome.NO_LIVE_CODE)
    assert outcomes[1][0] is False and isinstance(outcomes[1][1], LimitsRefused)
    assert storage.groups == [3]


def test_the_round_cache_lives_for_one_round_of_one_gathered_run() -> None:
    store = Recorder()
    seen: list[Any] = []

    def call(n: int) -> None:
        cache = gathering.round_cache()
        assert cache is not None
        seen.append(dict(cache))
        cache[n] = "read"
        park(store, store.run_many, (f"w{n}", n))  # a commit: what was read may have changed
        seen.append(dict(gathering.round_cache() or {}))

    run_gathered([lambda: call(0), lambda: call(1)])

    assert seen == [{}, {0: "read"}, {}, {}]  # shared within the round, emptied by its commit
    assert gathering.round_cache() is None  # nor outside a gathered call


def test_sqlite_peeks_a_bucket_once_a_round_and_again_after_a_commit(storage: Any) -> None:
    """Every verification of a batch peeks the same failure budgets: one read of each, until
    a write of the batch is committed."""
    storage.acquire_all([("budget", 60.0, 2)], 1000.0)  # one of its two tokens taken
    reads: list[str] = []

    def peek() -> float:
        conn = storage._conn()
        conn.set_trace_callback(lambda sql: reads.append(sql) if sql.startswith("SELECT tat FROM rate_") else None)
        return float(storage.acquire("budget", 60.0, 2, 1000.0, max_wait=float("-inf")))

    def verify_like() -> tuple[float, float]:
        before = peek(), peek()
        storage.acquire_all([("budget", 60.0, 2)], 1000.0)  # parks: the batch's write
        return before[0], peek()

    outcomes = run_gathered([verify_like, verify_like])
    storage._conn().set_trace_callback(None)

    # Both calls saw one token left before the commit, and none after it (they took both).
    assert [o for o in outcomes] == [(True, (0.0, 60.0)), (True, (0.0, 60.0))]
    assert len(reads) == 2  # once in the first round, once after the commit


def test_a_write_that_does_not_park_empties_the_round_cache(storage: Any) -> None:
    """A gathered call's write made without ``gather`` commits at once: later peeks of the
    round read again."""
    storage.acquire_all([("budget", 60.0, 2)], 1000.0)

    def call() -> tuple[float, float]:
        before = storage.acquire("budget", 60.0, 2, 1000.0, max_wait=float("-inf"))
        storage._grouped(lambda conn: conn.execute("UPDATE rate_limits SET tat = tat + 600 WHERE key = 'budget'"))
        return before, storage.acquire("budget", 60.0, 2, 1000.0, max_wait=float("-inf"))

    [(ok, waits)] = run_gathered([call])

    assert ok and waits[0] <= 0 < waits[1]


def test_the_agents_first_codes_issued_in_one_batch_are_one_group(tmp_path: Path) -> None:
    """The first codes ever issued: the routing figures' first read happens inside the batch,
    under a lock, with a write (it is not parked, so no other call of the batch waits on it)."""
    from otpagent import IntelligentOTPAgent
    from tests.conftest import agent_config

    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        groups = counting_groups(agent.storage)
        numbers = [f"+4477009001{i:02d}" for i in range(6)]
        outcomes = run_gathered([lambda n=n: agent.send_otp(n, buckets=[(f"k:{n}", 1.0, 5)]) for n in numbers])

        assert all(ok for ok, _ in outcomes), outcomes
        assert groups[-1] == len(numbers)  # the codes and their buckets: one commit
        for (_, message_id), number in zip(outcomes, numbers, strict=True):
            message = agent.storage.get_message(message_id)
            assert message is not None and message.phone_number == number
        refused = run_gathered([lambda: agent.send_otp("+447700900200", buckets=[("k:spent", 3600.0, 1)]),
                                lambda: agent.send_otp("+447700900201", buckets=[("k:spent", 3600.0, 1)])])
        assert refused[0][0] is True  # took the one token
        assert refused[1][0] is False and isinstance(refused[1][1], LimitsRefused)


def test_sqlite_enqueues_of_a_batch_are_one_group_and_a_conflict_fails_alone(storage: Any) -> None:
    from otpagent.protocols.storage import IdempotencyConflict
    from otpagent.testing.contract.base import new

    first = new(idempotency_key="order-1", fingerprint="a")
    storage.enqueue([first], 1000.0)
    storage.groups.clear()
    lone, keyed, clash = new(), new(idempotency_key="order-2", fingerprint="b"), new(idempotency_key="order-1",
                                                                                     fingerprint="other")

    outcomes = run_gathered([lambda: storage.enqueue([lone], 1000.0), lambda: storage.enqueue([keyed], 1000.0),
                             lambda: storage.enqueue([clash], 1000.0)])

    assert storage.groups == [3]
    assert outcomes[0][1][0].message_id == lone.message.id and outcomes[1][1][0].message_id == keyed.message.id
    assert outcomes[2][0] is False and isinstance(outcomes[2][1], IdempotencyConflict)
    assert storage.get_message(lone.message.id) is not None and storage.get_message(keyed.message.id) is not None
    assert storage.get_message(clash.message.id) is None
