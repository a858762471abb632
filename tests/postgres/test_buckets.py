"""The PostgreSQL token buckets decide in SQL what ``otpagent.ratelimit.gcra`` decides in Python.

``otpagent_postgres.buckets`` writes the GCRA rule a second time, in one statement, so that a
busy bucket's row lock is held for that statement only. These tests hold the two to the same
answers, to the last bit of every double, on random sequences of calls.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from otpagent.testing.data import T0
from otpagent.testing.memory import InMemoryStorage

KEYS = ("api:key", "api:ip", "recipient:a", "recipient:b", "channel:SMS")


def _random_calls(rng: random.Random, count: int, prefix: str) -> list[tuple[Any, ...]]:
    keys = [f"{prefix}{key}" for key in KEYS]
    calls: list[tuple[Any, ...]] = []
    now = T0
    for _ in range(count):
        now += rng.choice((0.0, 0.0, 0.001, 0.05, 0.3, 1.7, 12.5))
        interval = rng.choice((0.0, 0.01, 0.2, 1.0, 7.5))
        burst = rng.choice((0, 1, 2, 5))
        if rng.random() < 0.5:
            chosen = rng.sample(keys, rng.randint(1, 3))
            calls.append(("all", [(k, interval, burst) for k in chosen], now))
        else:
            max_wait = rng.choice((0.0, 0.0, 0.25, 3.0, float("-inf")))
            calls.append(("one", rng.choice(keys), interval, burst, now, rng.randint(1, 3), max_wait))
    return calls


def _replay(limits: Any, calls: list[tuple[Any, ...]]) -> list[Any]:
    answers: list[Any] = []
    for call in calls:
        if call[0] == "all":
            answers.append(limits.acquire_all(call[1], call[2]))
        else:
            _, key, interval, burst, now, cost, max_wait = call
            answers.append(limits.acquire(key, interval, burst, now, cost, max_wait=max_wait))
    return answers


def test_random_sequences_get_the_answers_the_python_rule_gives(open_store: Callable[..., Any]) -> None:
    store = open_store()
    for seed in range(4):
        calls = _random_calls(random.Random(seed), 150, prefix=f"{seed}:")

        assert _replay(store, calls) == _replay(InMemoryStorage(), calls), f"seed {seed}"


def test_a_bucket_whose_row_is_gone_is_created_and_decided(open_store: Callable[..., Any]) -> None:
    store = open_store()
    assert store.acquire_all([("a", 10.0, 1), ("b", 10.0, 1)], T0) == [0.0, 0.0]
    store.cleanup(T0 + 10 ** 9, T0 + 10 ** 9)  # idle buckets' rows are deleted

    assert store.acquire_all([("a", 10.0, 1), ("b", 10.0, 1)], T0 + 10 ** 9) == [0.0, 0.0]
    assert store.acquire_all([("a", 10.0, 1)], T0 + 10 ** 9) == [10.0]


def test_first_requests_racing_for_a_new_bucket_take_exactly_its_burst(open_store: Callable[..., Any]) -> None:
    # A missing bucket is created by the statement that grants it; callers that find it missing
    # at the same moment must not each get a fresh bucket (a second insert fails, and tries again).
    store = open_store()
    threads, rounds = 4, 25
    barrier = threading.Barrier(threads, timeout=30)
    granted: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        for i in range(rounds):
            barrier.wait()
            waits = store.acquire_all([("api:key", 0.001, 1_000_000), (f"new:{i}", 60.0, 2)], T0)
            if all(w <= 0.0 for w in waits):
                with lock:
                    granted.append(f"new:{i}")

    pool = [threading.Thread(target=caller) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)

    assert not any(t.is_alive() for t in pool)
    assert sorted(granted) == sorted(f"new:{i}" for i in range(rounds) for _ in range(2))
