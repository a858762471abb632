"""What the GCRA limiter promises, checked on a simulated clock: never more than
``burst + rate * T`` grants in any window of ``T`` seconds, however the requests arrive."""

from __future__ import annotations

import bisect
import random

import pytest

from otpagent.ratelimit import gcra


@pytest.mark.parametrize("seed", range(5))
def test_granted_slots_never_exceed_burst_plus_rate_in_any_window(seed: int) -> None:
    rng = random.Random(seed)
    rate, burst, max_wait = 50.0, 10, 1.0
    interval = 1.0 / rate
    tat: float | None = None
    now, slots = 1_800_000_000.0, []
    for _ in range(5_000):  # bursts of eager workers and quiet spells, as a fleet produces
        now += rng.choice([0.0, 0.0, 0.001, 0.005, 0.05, 0.3])
        new_tat, wait = gcra(tat, now, interval, burst, max_wait=max_wait)
        if wait <= max_wait:
            tat = new_tat
            slots.append(now + wait)

    slots.sort()
    assert len(slots) > 1_000
    for window in (0.05, 0.5, 2.0, 10.0):
        # (a window a few nanoseconds short absorbs float rounding in the slot times)
        busiest = max(bisect.bisect_left(slots, start + window - 1e-9) - i for i, start in enumerate(slots))
        assert busiest <= burst + rate * window
