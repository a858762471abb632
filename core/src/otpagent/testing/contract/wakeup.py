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
