"""Contract: a store shared by several processes hands each message and token out once.

Not applicable to a store that lives in one process (``shared_across_processes = False``).
The opener is handed to spawned children, which open their own connection to the same store.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from otpagent.protocols import RateLimits, StorageBackend
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.contract.workers import acquire_many, claim_until_empty
from otpagent.testing.data import T0, new
from otpagent.testing.openers import StoreOpener

__all__ = ["CrossProcessContract"]


def _spawning_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))


class CrossProcessContract(ContractBase):
    """Two processes on one store."""

    def test_concurrent_claims_from_two_processes_never_overlap(self, storage: StorageBackend,
                                                                shared_store: StoreOpener) -> None:
        items = [new() for _ in range(300)]
        storage.enqueue(items, T0)

        with _spawning_pool() as pool:
            futures = [pool.submit(claim_until_empty, shared_store, f"proc-{i}", T0, 4, 60.0) for i in range(2)]
            per_process = [f.result(timeout=120) for f in futures]

        claimed = [mid for ids in per_process for mid in ids]
        assert len(claimed) == len(set(claimed))
        assert set(claimed) == {i.message.id for i in items}

    def test_acquires_from_two_processes_share_one_bucket(self, rate_limits: RateLimits,
                                                          shared_store: StoreOpener) -> None:
        with _spawning_pool() as pool:
            futures = [pool.submit(acquire_many, shared_store, "fleet", 30, T0) for _ in range(2)]
            grants = [f.result(timeout=120) for f in futures]

        assert sum(grants) == 10
