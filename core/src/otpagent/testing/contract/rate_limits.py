"""Contract: GCRA buckets, one at a time or all of a request's at once."""

from __future__ import annotations

import math

import pytest

from otpagent.protocols import RateLimits
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0

__all__ = ["RateLimitContract"]


class RateLimitContract(ContractBase):
    """The rate limit capability."""

    def test_a_bucket_allows_its_burst_at_once_then_asks_to_wait(self, rate_limits: RateLimits) -> None:
        waits = [rate_limits.acquire("sms", 1.0, 3, T0) for _ in range(4)]

        assert waits[:3] == [0.0, 0.0, 0.0]
        assert waits[3] == pytest.approx(1.0)

    def test_a_peek_reports_the_wait_and_takes_nothing(self, rate_limits: RateLimits) -> None:
        assert rate_limits.acquire("b", 10.0, 1, T0, max_wait=-math.inf) <= 0, "a new bucket has its token"
        assert rate_limits.acquire("b", 10.0, 1, T0) == 0.0, "the peek took nothing"
        assert rate_limits.acquire("b", 10.0, 1, T0 + 1, max_wait=-math.inf) == pytest.approx(9.0)
        assert rate_limits.acquire("b", 10.0, 1, T0 + 10, max_wait=-math.inf) <= 0
        assert rate_limits.acquire("b", 10.0, 1, T0 + 10) == 0.0

    def test_a_bucket_refills_at_its_rate(self, rate_limits: RateLimits) -> None:
        for _ in range(3):
            rate_limits.acquire("sms", 0.5, 3, T0)

        assert rate_limits.acquire("sms", 0.5, 3, T0 + 0.25) == pytest.approx(0.25)
        assert rate_limits.acquire("sms", 0.5, 3, T0 + 0.5) == 0.0
        assert rate_limits.acquire("sms", 0.5, 3, T0 + 0.5) == pytest.approx(0.5)
        # A long pause refills the bucket to its burst, no further.
        assert [rate_limits.acquire("sms", 0.5, 3, T0 + 100) for _ in range(4)][-1] == pytest.approx(0.5)

    def test_max_wait_reserves_the_next_slots_in_order(self, rate_limits: RateLimits) -> None:
        rate_limits.acquire("sms", 0.1, 1, T0)

        waits = [rate_limits.acquire("sms", 0.1, 1, T0, max_wait=0.25) for _ in range(3)]

        assert waits[0] == pytest.approx(0.1) and waits[1] == pytest.approx(0.2)
        assert waits[2] == pytest.approx(0.3), "beyond max_wait: refused, with its wait"
        assert rate_limits.acquire("sms", 0.1, 1, T0) == pytest.approx(0.3), "the refused one took nothing"

    def test_a_refused_request_takes_nothing(self, rate_limits: RateLimits) -> None:
        rate_limits.acquire("sms", 1.0, 1, T0)
        for _ in range(10):
            rate_limits.acquire("sms", 1.0, 1, T0 + 0.5)

        assert rate_limits.acquire("sms", 1.0, 1, T0 + 1.0) == 0.0

    def test_buckets_are_independent_and_cost_takes_several_tokens(self, rate_limits: RateLimits) -> None:
        assert rate_limits.acquire("a", 1.0, 5, T0, cost=5) == 0.0
        assert rate_limits.acquire("a", 1.0, 5, T0) == pytest.approx(1.0)
        assert rate_limits.acquire("b", 1.0, 5, T0) == 0.0

    def test_a_steady_rate_is_held_over_driven_time(self, rate_limits: RateLimits) -> None:
        granted = sum(rate_limits.acquire("steady", 0.1, 5, T0 + i * 0.05) == 0.0 for i in range(400))

        # 20 s at 10 per second, plus the initial burst.
        assert granted == pytest.approx(200 + 5, abs=2)

    def test_acquire_all_takes_a_token_from_every_bucket_or_from_none(self, rate_limits: RateLimits) -> None:
        buckets = [("key", 1.0, 2), ("recipient", 10.0, 1)]

        assert rate_limits.acquire_all(buckets, T0) == [0.0, 0.0]
        waits = rate_limits.acquire_all(buckets, T0)

        assert waits[0] == 0.0 and waits[1] == pytest.approx(10.0), "in the order given"
        assert rate_limits.acquire("key", 1.0, 2, T0) == 0.0, "the refused call took no token from 'key'"
        assert rate_limits.acquire("key", 1.0, 2, T0) == pytest.approx(1.0)
        assert rate_limits.acquire_all([("recipient", 10.0, 1), ("key", 1.0, 2)], T0 + 10.0) == [0.0, 0.0]

    def test_acquire_all_with_no_buckets_grants_nothing_to_take(self, rate_limits: RateLimits) -> None:
        assert rate_limits.acquire_all([], T0) == []

    def test_a_refused_acquire_all_names_every_empty_bucket(self, rate_limits: RateLimits) -> None:
        rate_limits.acquire("a", 5.0, 1, T0)
        rate_limits.acquire("c", 2.0, 1, T0)

        waits = rate_limits.acquire_all([("a", 5.0, 1), ("b", 1.0, 1), ("c", 2.0, 1)], T0)

        assert waits[0] == pytest.approx(5.0) and waits[1] == 0.0 and waits[2] == pytest.approx(2.0)
        assert rate_limits.acquire("b", 1.0, 1, T0) == 0.0, "b kept its token"
