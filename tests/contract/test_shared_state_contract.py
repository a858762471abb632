"""Contract: GCRA buckets, shared key/value state and provider event de-duplication."""

from __future__ import annotations

import pytest

from otpagent.protocols import StorageBackend
from tests.contract.conftest import T0


def test_a_bucket_allows_its_burst_at_once_then_asks_to_wait(storage: StorageBackend) -> None:
    waits = [storage.acquire("sms", 1.0, 3, T0) for _ in range(4)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(1.0)


def test_a_bucket_refills_at_its_rate(storage: StorageBackend) -> None:
    for _ in range(3):
        storage.acquire("sms", 0.5, 3, T0)

    assert storage.acquire("sms", 0.5, 3, T0 + 0.25) == pytest.approx(0.25)
    assert storage.acquire("sms", 0.5, 3, T0 + 0.5) == 0.0
    assert storage.acquire("sms", 0.5, 3, T0 + 0.5) == pytest.approx(0.5)
    # A long pause refills the bucket to its burst, no further.
    assert [storage.acquire("sms", 0.5, 3, T0 + 100) for _ in range(4)][-1] == pytest.approx(0.5)


def test_max_wait_reserves_the_next_slots_in_order(storage: StorageBackend) -> None:
    storage.acquire("sms", 0.1, 1, T0)

    waits = [storage.acquire("sms", 0.1, 1, T0, max_wait=0.25) for _ in range(3)]

    assert waits[0] == pytest.approx(0.1) and waits[1] == pytest.approx(0.2)
    assert waits[2] == pytest.approx(0.3), "beyond max_wait: refused, with its wait"
    assert storage.acquire("sms", 0.1, 1, T0) == pytest.approx(0.3), "the refused one took nothing"


def test_a_refused_request_takes_nothing(storage: StorageBackend) -> None:
    storage.acquire("sms", 1.0, 1, T0)
    for _ in range(10):
        storage.acquire("sms", 1.0, 1, T0 + 0.5)

    assert storage.acquire("sms", 1.0, 1, T0 + 1.0) == 0.0


def test_buckets_are_independent_and_cost_takes_several_tokens(storage: StorageBackend) -> None:
    assert storage.acquire("a", 1.0, 5, T0, cost=5) == 0.0
    assert storage.acquire("a", 1.0, 5, T0) == pytest.approx(1.0)
    assert storage.acquire("b", 1.0, 5, T0) == 0.0


def test_a_steady_rate_is_held_over_driven_time(storage: StorageBackend) -> None:
    granted = sum(storage.acquire("steady", 0.1, 5, T0 + i * 0.05) == 0.0 for i in range(400))

    # 20 s at 10 per second, plus the initial burst.
    assert granted == pytest.approx(200 + 5, abs=2)


def test_state_is_stored_and_replaced(storage: StorageBackend) -> None:
    assert storage.get_state("circuit:SMS") is None

    assert storage.put_state("circuit:SMS", "open") == "open"
    assert storage.put_state("circuit:SMS", "closed") == "closed"

    assert storage.get_state("circuit:SMS") == "closed"


def test_only_if_absent_keeps_the_existing_value(storage: StorageBackend) -> None:
    first = storage.put_state("otp-key", "first", only_if_absent=True)
    second = storage.put_state("otp-key", "second", only_if_absent=True)

    assert (first, second, storage.get_state("otp-key")) == ("first", "first", "first")


def test_update_state_reads_modifies_and_writes(storage: StorageBackend) -> None:
    seen: list[str | None] = []

    def bump(current: str | None) -> str:
        seen.append(current)
        return str(int(current or "0") + 1)

    assert storage.update_state("counter", bump) == "1"
    assert storage.update_state("counter", bump) == "2"
    assert seen[0] is None
    assert seen[-1] == "1"
    assert storage.get_state("counter") == "2"


def test_states_with_prefix_match_the_prefix_literally(storage: StorageBackend) -> None:
    for key in ("circuit:SMS", "circuit:EMAIL", "circuits", "rate_1", "rateX1", "pause:SMS"):
        storage.put_state(key, key.upper())

    assert storage.states_with_prefix("circuit:") == {"circuit:SMS": "CIRCUIT:SMS", "circuit:EMAIL": "CIRCUIT:EMAIL"}
    assert storage.states_with_prefix("rate_") == {"rate_1": "RATE_1"}
    assert storage.states_with_prefix("nothing") == {}


def test_a_provider_event_id_is_seen_once_per_source(storage: StorageBackend) -> None:
    assert storage.remember_event_id("sendgrid", "evt-1", T0) is True
    assert storage.remember_event_id("sendgrid", "evt-1", T0 + 1) is False
    assert storage.remember_event_id("twilio", "evt-1", T0 + 1) is True


def test_acquire_all_takes_a_token_from_every_bucket_or_from_none(storage: StorageBackend) -> None:
    take_all = storage.acquire_all  # type: ignore[attr-defined]  # optional; both built-ins have it
    buckets = [("key", 1.0, 2), ("recipient", 10.0, 1)]

    assert take_all(buckets, T0) == [0.0, 0.0]
    waits = take_all(buckets, T0)

    assert waits[0] == 0.0 and waits[1] == pytest.approx(10.0), "in the order given"
    assert storage.acquire("key", 1.0, 2, T0) == 0.0, "the refused call took no token from 'key'"
    assert storage.acquire("key", 1.0, 2, T0) == pytest.approx(1.0)
    assert take_all([("recipient", 10.0, 1), ("key", 1.0, 2)], T0 + 10.0) == [0.0, 0.0]
