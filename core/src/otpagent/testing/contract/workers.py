"""What the cross-process contract tests run in spawned children (importable, picklable args)."""

from __future__ import annotations

import time

from otpagent.protocols import Capability
from otpagent.storage.capabilities import require
from otpagent.testing.openers import StoreOpener

__all__ = ["acquire_many", "claim_until_empty"]


def claim_until_empty(opener: StoreOpener, worker_id: str, now: float, batch: int,
                      deadline_seconds: float) -> list[str]:
    """Open the store in this process and claim everything due; returns the claimed ids."""
    store = opener()
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


def acquire_many(opener: StoreOpener, key: str, times: int, now: float) -> int:
    """Open the store in this process and try the bucket ``times`` times; returns grants."""
    store = opener()
    try:
        limits = require(store, Capability.RATE_LIMITS, config_path="storage", needed_by="the contract suite")
        return sum(limits.acquire(key, 1.0, 10, now) == 0.0 for _ in range(times))
    finally:
        store.close()
