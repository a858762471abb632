"""The fraud guard on PostgreSQL: two guards on one schema (two workers of a fleet) share one
set of counts and one hold, through the backend's atomic ``update_state``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from otpagent.errors import OtpHeld
from otpagent.fraud import FraudGuard, FraudGuardSettings

T0 = 1_800_000_000.0
SETTINGS = FraudGuardSettings(min_volume=10, flush_seconds=0.0)


def test_counts_from_two_workers_add_up_and_the_hold_holds_for_both(open_store: Callable[..., Any]) -> None:
    first, second = FraudGuard(open_store(), SETTINGS), FraudGuard(open_store(), SETTINGS)

    def pump(guard: FraudGuard, offset: int) -> None:
        for i in range(40):
            guard.record_sent(f"+3712955{offset + i:04d}", T0 + i)

    workers = [threading.Thread(target=pump, args=(g, n * 1000)) for n, g in enumerate((first, second))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    first.flush(T0 + 60)
    second.flush(T0 + 60)
    status = {s.country: s for s in first.status(T0 + 60) if s.prefix is None}
    assert status["LV"].sent == 80, "no update lost between the two workers"

    second.record_sent("+37129559999", T0 + 400)  # old enough now: the next count tips it
    with pytest.raises(OtpHeld):
        first.check("+37129558888", T0 + 401)
    assert first.release("+3712955", T0 + 402)
    second.check("+37129558887", T0 + 403)
