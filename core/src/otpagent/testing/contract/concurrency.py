"""Contract: the atomic operations hold under many threads at once, on one handle."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from otpagent.errors import LimitsRefused
from otpagent.model import Status
from otpagent.protocols import (
    MessageUpdate,
    OtpStore,
    OtpVerifyOutcome,
    ProviderEvent,
    ProviderEventOutcome,
    ProviderEvents,
    RateLimits,
    SharedState,
    StorageBackend,
)
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, issue, make_attempt, new, verify

__all__ = ["ConcurrencyContract", "together"]

R = TypeVar("R")
ALICE = "+447700900123"


def together(n: int, fn: Callable[[int], R]) -> list[R]:
    """Run ``fn(i)`` for i in range(n), in ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i: int) -> R:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n), timeout=120))


class ConcurrencyContract(ContractBase):
    """Many threads on one handle: each claim, token, increment, code and event counts once."""

    def test_concurrent_claims_hand_each_message_to_exactly_one_thread(self, storage: StorageBackend) -> None:
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

        claimed = [mid for ids in together(8, claim_all) for mid in ids]

        assert len(claimed) == len(set(claimed))
        assert set(claimed) == {i.message.id for i in items}

    def test_concurrent_enqueues_with_one_key_create_one_message(self, storage: StorageBackend) -> None:
        results = together(8, lambda i: storage.enqueue([new(idempotency_key="same", fingerprint="fp")], T0)[0])

        assert sum(r.created for r in results) == 1
        assert len({r.message_id for r in results}) == 1
        assert len(storage.recent_messages(100)) == 1

    def test_concurrent_acquires_grant_exactly_the_burst(self, rate_limits: RateLimits) -> None:
        grants = together(8, lambda _: sum(rate_limits.acquire("shared", 1.0, 10, T0) == 0.0 for _ in range(25)))

        assert sum(grants) == 10

    def test_concurrent_acquire_alls_grant_exactly_the_burst(self, rate_limits: RateLimits) -> None:
        buckets = [("api:key", 1.0, 6), ("api:ip", 1.0, 100)]

        grants = together(8, lambda _: sum(max(rate_limits.acquire_all(buckets, T0)) == 0.0 for _ in range(5)))

        assert sum(grants) == 6
        assert rate_limits.acquire("api:ip", 1.0, 100, T0) == 0.0, "refused calls took nothing from the other bucket"

    def test_concurrent_issues_under_one_bucket_issue_exactly_its_burst(self, storage: StorageBackend,
                                                                          otp_store: OtpStore) -> None:
        def try_issue(i: int) -> bool:
            try:
                issue(otp_store, f"+4477009002{i:02d}", "123456", buckets=[("api:key", 60.0, 3)])
            except LimitsRefused:
                return False
            return True

        issued = together(8, try_issue)

        assert sum(issued) == 3
        assert len(storage.claim_due("w1", 20, 30.0, T0)) == 3, "each refused issue wrote nothing, each granted one all"

    def test_concurrent_state_updates_lose_no_increment(self, shared_state: SharedState) -> None:
        def bump_many(_: int) -> None:
            for _ in range(20):
                shared_state.update_state("hits", lambda v: str(int(v or "0") + 1))

        together(8, bump_many)

        assert shared_state.get_state("hits") == "160"

    def test_two_concurrent_verifies_of_the_right_code_verify_once(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        outcomes = together(8, lambda i: verify(otp_store, ALICE, "123456", now=T0 + 1))

        assert Counter(outcomes)[OtpVerifyOutcome.VERIFIED] == 1

    def test_concurrent_wrong_guesses_get_no_more_tries_than_the_limit(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        outcomes = Counter(together(12, lambda i: verify(otp_store, ALICE, f"{i:06d}", now=T0 + 1, max_attempts=5)))

        assert outcomes[OtpVerifyOutcome.INVALID] == 4
        assert outcomes[OtpVerifyOutcome.TOO_MANY_ATTEMPTS] == 1
        assert outcomes[OtpVerifyOutcome.NO_LIVE_CODE] == 7, "the dead code is compared with no further guess"
        assert verify(otp_store, ALICE, "123456", now=T0 + 2) is OtpVerifyOutcome.NO_LIVE_CODE

    def test_one_provider_event_delivered_by_many_threads_applies_once(self, storage: StorageBackend,
                                                                       provider_events: ProviderEvents) -> None:
        item = new()
        storage.enqueue([item], T0)
        mid = item.message.id
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, provider_message_id="SM1"), T0,
                               attempt=make_attempt(mid, provider_message_id="SM1"))
        event = ProviderEvent(source="twilio", event_id="evt-1", provider_message_id="SM1", status=Status.DELIVERED)
        update = MessageUpdate(message_id=mid, status=Status.DELIVERED, expected_statuses=frozenset({Status.SENT}))

        results = together(8, lambda i: provider_events.apply_provider_event(
            event, allowed_from=frozenset({None, Status.SENT}), update=update, events=(), now=T0 + 1 + i))

        assert Counter(r.outcome for r in results) == {ProviderEventOutcome.APPLIED: 1, ProviderEventOutcome.REPLAY: 7}
        assert sum(r.message_updated for r in results) == 1
