"""Contract: the work wake-up returns soon after an enqueue, and after its timeout otherwise."""

from __future__ import annotations

import threading
import time

from otpagent.protocols import StorageBackend, WorkWakeup
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, new
from otpagent.testing.openers import StoreOpener

__all__ = ["WakeupContract"]


class WakeupContract(ContractBase):
    """The work wake-up capability (``wait_for_work``)."""

    def test_waiting_without_work_returns_by_its_timeout(self, wakeup: WorkWakeup) -> None:
        done = threading.Event()

        def wait() -> None:
            wakeup.wait_for_work(0.2)
            done.set()

        waiter = threading.Thread(target=wait, daemon=True)

        waiter.start()
        waiter.join(20.0)

        assert done.is_set(), "wait_for_work(0.2) must return (spurious early returns are allowed)"

    def test_an_enqueue_through_another_handle_wakes_a_waiter(self, wakeup: WorkWakeup,
                                                              store_opener: StoreOpener) -> None:
        wakeup.wait_for_work(0.01)  # a backend may start listening on its first call
        woke = threading.Event()

        def wait() -> None:
            wakeup.wait_for_work(30.0)
            woke.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        other: StorageBackend = store_opener()
        try:
            # Enqueue until the waiter wakes: the first enqueue may land before it waits.
            deadline = time.monotonic() + 20.0
            while not woke.wait(0.2) and time.monotonic() < deadline:
                other.enqueue([new()], T0)
        finally:
            other.close()
        waiter.join(30.0)

        assert woke.is_set(), "wait_for_work(30) returned only at its timeout"

    def test_work_enqueued_after_a_claim_began_ends_the_wait_that_follows(
            self, storage: StorageBackend, wakeup: WorkWakeup, store_opener: StoreOpener) -> None:
        """The dispatcher's claimer waits right after a claim that took everything due: what
        another process enqueued between that claim and the wait must not wait for the idle
        poll. (One thread claims and then waits, as the claimer does.)"""
        claimed, enqueued, woke = threading.Event(), threading.Event(), threading.Event()
        found: list[int] = []

        def claim_then_wait() -> None:
            wakeup.wait_for_work(0.01)  # a backend may start listening on its first call
            found.append(len(storage.claim_due("w1", 4, 30.0, T0)))
            claimed.set()
            if enqueued.wait(30.0):
                wakeup.wait_for_work(60.0)
                woke.set()

        claimer = threading.Thread(target=claim_then_wait, daemon=True)
        claimer.start()
        assert claimed.wait(30.0) and found == [0]
        other: StorageBackend = store_opener()
        try:
            other.enqueue([new()], T0)
        finally:
            other.close()
        enqueued.set()
        claimer.join(30.0)

        assert woke.is_set(), "a message enqueued before the wait began was left to the wait's timeout"
        assert len(storage.claim_due("w1", 4, 30.0, T0)) == 1

    def test_a_claim_brings_every_due_message_up_to_its_limit(self, storage: StorageBackend,
                                                               wakeup: WorkWakeup) -> None:
        """With a wake-up, a claim that brings fewer than its limit tells the dispatcher that
        nothing else was due: it then waits for news of more instead of claiming again."""
        storage.enqueue([new() for _ in range(7)], T0)

        assert len(storage.claim_due("w1", 5, 30.0, T0)) == 5
        assert len(storage.claim_due("w1", 5, 30.0, T0)) == 2
