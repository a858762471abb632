"""Contract: the atomic operations hold under many threads and several processes at once."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

import pytest

from otpagent.protocols import OtpVerifyOutcome, StorageBackend
from tests.contract.backends import StoreSpec
from tests.contract.conftest import T0, issue, new, verify
from tests.contract.workers import acquire_many, claim_until_empty

R = TypeVar("R")
ALICE = "+447700900123"


def _together(n: int, fn: Callable[[int], R]) -> list[R]:
    """Run ``fn(i)`` in ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i: int) -> R:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n), timeout=120))


def test_concurrent_claims_hand_each_message_to_exactly_one_thread(storage: StorageBackend) -> None:
    items = [new() for _ in range(240)]
    storage.enqueue(items, T0)

    def claim_all(i: int) -> list[str]:
        ids: list[str] = []
        for _ in range(200):  # bounded: 240 messages, batches of 3
            got = storage.claim_due(f"w{i}", 3, 300.0, T0)
            if not got and ids:
                break
            ids.extend(m.id for m in got)
        return ids

    per_thread = _together(8, claim_all)

    claimed = [mid for ids in per_thread for mid in ids]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == {i.message.id for i in items}


def test_concurrent_claims_from_two_processes_never_overlap(storage: StorageBackend, store_spec: StoreSpec) -> None:
    items = [new() for _ in range(300)]
    storage.enqueue(items, T0)

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(claim_until_empty, store_spec, f"proc-{i}", T0, 4, 60.0) for i in range(2)]
        per_process = [f.result(timeout=120) for f in futures]

    claimed = [mid for ids in per_process for mid in ids]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == {i.message.id for i in items}


def test_concurrent_acquires_grant_exactly_the_burst(storage: StorageBackend) -> None:
    grants = _together(8, lambda _: sum(storage.acquire("shared", 1.0, 10, T0) == 0.0 for _ in range(25)))

    assert sum(grants) == 10


def test_acquires_from_two_processes_share_one_bucket(storage: StorageBackend, store_spec: StoreSpec) -> None:
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(acquire_many, store_spec, "fleet", 30, T0) for _ in range(2)]
        grants = [f.result(timeout=120) for f in futures]

    assert sum(grants) == 10


def test_concurrent_state_updates_lose_no_increment(storage: StorageBackend) -> None:
    def bump_many(_: int) -> None:
        for _ in range(20):
            storage.update_state("hits", lambda v: str(int(v or "0") + 1))

    _together(8, bump_many)

    assert storage.get_state("hits") == "160"


def test_two_concurrent_verifies_of_the_right_code_verify_once(storage: StorageBackend) -> None:
    issue(storage, ALICE, "123456")

    outcomes = _together(8, lambda i: verify(storage, ALICE, "123456", now=T0 + 1))

    assert Counter(outcomes)[OtpVerifyOutcome.VERIFIED] == 1


def test_concurrent_wrong_guesses_get_no_more_tries_than_the_limit(storage: StorageBackend) -> None:
    issue(storage, ALICE, "123456")

    outcomes = Counter(_together(12, lambda i: verify(storage, ALICE, f"{i:06d}", now=T0 + 1, max_failures=5)))

    assert outcomes[OtpVerifyOutcome.INVALID] == 4
    assert outcomes[OtpVerifyOutcome.TOO_MANY_ATTEMPTS] == 1
    assert outcomes[OtpVerifyOutcome.LOCKED] == 7


@pytest.mark.parametrize("threads", [8])
def test_concurrent_enqueues_with_one_key_create_one_message(storage: StorageBackend, threads: int) -> None:
    results = _together(threads, lambda i: storage.enqueue([new(idempotency_key="same", fingerprint="fp")], T0)[0])

    assert sum(r.created for r in results) == 1
    assert len({r.message_id for r in results}) == 1
    assert storage.stats(T0).total == 1
