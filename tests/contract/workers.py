"""Code run in spawned child processes by the concurrency contract tests (must be importable)."""

from __future__ import annotations

import time

from tests.contract.backends import StoreSpec


def claim_until_empty(spec: StoreSpec, worker_id: str, now: float, batch: int, deadline_seconds: float) -> list[str]:
    """Open the store in this process and claim everything due; returns the claimed ids."""
    store = spec.open()
    claimed: list[str] = []
    deadline = time.monotonic() + deadline_seconds
    empty_rounds = 0
    try:
        while time.monotonic() < deadline and empty_rounds < 3:
            got = store.claim_due(worker_id, batch, 300.0, now)
            empty_rounds = 0 if got else empty_rounds + 1
            claimed.extend(m.id for m in got)
    finally:
        store.close()
    return claimed


def acquire_many(spec: StoreSpec, key: str, times: int, now: float) -> int:
    """Open the store in this process and try the bucket ``times`` times; returns grants."""
    store = spec.open()
    try:
        return sum(store.acquire(key, 1.0, 10, now) == 0.0 for _ in range(times))
    finally:
        store.close()
