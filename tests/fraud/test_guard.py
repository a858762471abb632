"""The fraud guard's rules, on the in-memory store and a simulated clock."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from otpagent.errors import ConfigError, InvalidRequest, OtpHeld
from otpagent.fraud import FraudGuard, FraudGuardSettings, destination, parse_fraud_guard
from otpagent.model import Event
from otpagent.testing import InMemoryStorage

T0 = 1_800_000_000.0
SETTINGS = FraudGuardSettings(min_volume=10, flush_seconds=0.0)
PUMPED = "+3712955"


def number(prefix: str, i: int) -> str:
    return f"{prefix}{i:04d}"


class Run:
    """A guard on its own store, the clock in the test's hands, its events collected."""

    def __init__(self, settings: FraudGuardSettings = SETTINGS, store: InMemoryStorage | None = None) -> None:
        self.store = store or InMemoryStorage()
        self.events: list[Event] = []
        self.guard = FraudGuard(self.store, settings, on_event=self.events.append)
        self.now = T0

    def request(self, phone: str, *, verify: bool = False) -> bool:
        """One OTP request; whether it was let through."""
        try:
            self.guard.check(phone, self.now)
        except OtpHeld:
            return False
        self.guard.record_sent(phone, self.now)
        if verify:
            self.guard.record_verified(phone, self.now + 20)
        return True

    def traffic(self, prefix: str, count: int, *, every: float, verified_share: float = 0.0) -> int:
        """``count`` requests ``every`` seconds apart; returns how many were let through."""
        through = 0
        for i in range(count):
            through += self.request(number(prefix, i), verify=(i % 10) < verified_share * 10)
            self.now += every
        return through

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def test_the_prefix_is_the_calling_code_and_leading_national_digits() -> None:
    assert destination("+447700900123", 4).prefix == "+447700"  # type: ignore[union-attr]
    assert destination("+14155550123", 4).prefix == "+14155"  # type: ignore[union-attr]
    assert destination("+37129551234", 4).country == "LV"  # type: ignore[union-attr]
    assert destination("+99999", 4) is None


def test_a_few_unverified_codes_never_hold_a_prefix() -> None:
    run = Run()
    assert run.traffic(PUMPED, 9, every=10) == 9
    run.now += 600
    assert run.traffic(PUMPED, 1, every=1) == 1
    assert run.request(number(PUMPED, 99))
    assert run.events == []


def test_volume_without_conversion_holds_the_prefix_and_says_so() -> None:
    run = Run()
    run.traffic(PUMPED, 20, every=10)
    run.now += 200  # every code is now old enough to have been entered
    run.request(number(PUMPED, 50))  # the counts that tip it
    assert not run.request(number(PUMPED, 51))
    with pytest.raises(OtpHeld) as refused:
        run.guard.check(number(PUMPED, 52), run.now)
    assert refused.value.prefix == PUMPED and refused.value.retry_after == pytest.approx(3600, abs=1)
    assert run.types() == ["fraud_prefix_held"]
    held = run.events[0].data
    assert held["prefix"] == PUMPED and held["country"] == "LV" and "0 of " in held["reason"]
    assert run.request("+447700900123"), "other prefixes are not touched"


def test_a_prefix_whose_users_enter_their_codes_is_never_held() -> None:
    run = Run()
    assert run.traffic(PUMPED, 400, every=2, verified_share=0.8) == 400
    assert run.events == []


def test_a_prefix_converting_little_as_usual_is_not_held_but_a_collapse_is() -> None:
    run = Run()
    run.traffic(PUMPED, 600, every=6, verified_share=0.4)  # an hour of 40% conversion: the baseline
    assert run.events == []
    run.traffic(PUMPED, 1200, every=0.5, verified_share=0.0)  # 12x the rate, nobody enters a code
    assert run.types() == ["fraud_prefix_held"]
    assert "usually 40%" in run.events[0].data["reason"]


def test_a_hold_is_extended_while_requests_keep_coming_and_released_once_they_stop() -> None:
    run = Run()
    run.traffic(PUMPED, 30, every=10)
    run.now += 200
    run.traffic(PUMPED, 2, every=1)
    assert run.types() == ["fraud_prefix_held"]
    until = run.events[0].data["held_until"]
    run.traffic(PUMPED, 400, every=(until - run.now) / 400)  # the attacker keeps asking, refused
    assert run.traffic(PUMPED, 1, every=1) == 0, "re-evaluated at expiry: still attacked, still held"
    assert run.types() == ["fraud_prefix_held", "fraud_prefix_held"] and run.events[1].data["extended"]
    run.now = run.events[1].data["held_until"] + 1  # an hour of silence
    assert run.request(number(PUMPED, 999))
    assert run.types()[-1] == "fraud_prefix_released" and run.events[-1].data["by"] == "guard"


def test_a_prefix_held_again_soon_after_its_release_is_held_twice_as_long() -> None:
    run = Run()
    run.traffic(PUMPED, 30, every=10)
    run.now += 200
    run.traffic(PUMPED, 2, every=1)
    first = run.events[0].data["held_until"] - run.events[0].at
    run.now = run.events[0].data["held_until"] + 1
    run.traffic(PUMPED, 30, every=10)
    run.now += 200
    run.traffic(PUMPED, 2, every=1)
    again = [e for e in run.events if e.type == "fraud_prefix_held"][-1]
    assert again.data["held_until"] - again.at == pytest.approx(2 * first)


def test_an_operator_release_lets_codes_through_and_keeps_the_guard_off_for_a_while() -> None:
    run = Run()
    run.traffic(PUMPED, 30, every=10)
    run.now += 200
    run.traffic(PUMPED, 2, every=1)
    assert run.guard.release(PUMPED, run.now) is True
    assert run.types()[-1] == "fraud_prefix_released" and run.events[-1].data["by"] == "operator"
    assert run.traffic(PUMPED, 40, every=10) == 40, "within release_grace_seconds nothing is held"
    assert run.guard.release(PUMPED, run.now) is False
    with pytest.raises(InvalidRequest, match="prefix"):
        run.guard.release("447700", run.now)


@pytest.mark.parametrize("entry", ["LV", PUMPED, "+371"])
def test_allow_listed_countries_and_prefixes_are_never_held(entry: str) -> None:
    run = Run(FraudGuardSettings(min_volume=10, flush_seconds=0.0, allow=(entry,)))
    run.traffic(PUMPED, 60, every=10)
    assert run.traffic(PUMPED, 5, every=1) == 5
    assert run.events == [] and run.store.states_with_prefix("fraud:") == {}


def test_a_disabled_guard_counts_nothing_and_holds_nothing() -> None:
    run = Run(FraudGuardSettings(enabled=False, min_volume=10, flush_seconds=0.0))
    assert run.traffic(PUMPED, 100, every=10) == 100
    assert run.store.states_with_prefix("fraud:") == {}


def test_holds_are_shared_by_every_guard_on_the_store() -> None:
    first = Run()
    second = Run(store=first.store)
    first.traffic(PUMPED, 30, every=10)
    first.now += 200
    first.traffic(PUMPED, 2, every=1)
    second.now = first.now
    assert not second.request(number(PUMPED, 77))
    second.guard.release(PUMPED, second.now)
    assert first.request(number(PUMPED, 78))


def test_counts_published_every_flush_interval_reach_the_store() -> None:
    run = Run(FraudGuardSettings(min_volume=10, flush_seconds=5.0))
    for i in range(3):
        run.request(number(PUMPED, i))
    assert run.store.get_state(f"fraud:prefix:{PUMPED}") is None, "kept in memory until the interval is over"
    run.now += 5
    run.request(number(PUMPED, 4))  # its check publishes the three before it
    record = json.loads(run.store.get_state(f"fraud:prefix:{PUMPED}") or "{}")
    assert sum(b[1] for b in record["w"]) == 3
    run.guard.flush(run.now)
    record = json.loads(run.store.get_state(f"fraud:prefix:{PUMPED}") or "{}")
    assert sum(b[1] for b in record["w"]) == 4


def test_the_shared_record_stays_small_however_long_the_traffic() -> None:
    run = Run()
    run.traffic(PUMPED, 3000, every=20, verified_share=0.8)  # more than 16 hours
    record = run.store.get_state(f"fraud:prefix:{PUMPED}") or ""
    assert len(json.loads(record)["w"]) <= 30 and len(record) < 1200
    status = {s.prefix or s.country: s for s in run.guard.status(run.now)}
    assert status[PUMPED].baseline_conversion == pytest.approx(0.8, abs=0.01)
    assert status["LV"].held_until is None


@pytest.mark.parametrize(("section", "key"), [
    ({"min_volume": 2}, "otp.fraud_guard.min_volume"),
    ({"prefix_digits": "4"}, "otp.fraud_guard.prefix_digits"),
    ({"collapse_ratio": 1.5}, "otp.fraud_guard.collapse_ratio"),
    ({"allow": ["GBR"]}, "otp.fraud_guard.allow[0]"),
    ({"allow": "GB"}, "otp.fraud_guard.allow"),
    ({"enabled": "yes"}, "otp.fraud_guard.enabled"),
    ({"hold_seconds": 7200, "max_hold_seconds": 3600}, "otp.fraud_guard.max_hold_seconds"),
    ({"verify_grace_seconds": 900, "window_seconds": 600}, "otp.fraud_guard.verify_grace_seconds"),
    ({"holdseconds": 1}, "otp.fraud_guard.holdseconds"),
])
def test_bad_settings_name_their_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_fraud_guard(section)
    assert error.value.path == key


def test_settings_parse_allow_entries_and_numbers() -> None:
    settings = parse_fraud_guard({"allow": ["gb", "+4477009"], "hold_seconds": 600, "min_volume": 50})
    assert settings.allow == ("GB", "+4477009") and settings.hold_seconds == 600.0 and settings.min_volume == 50
    assert settings.allows("+447700900123", "GB") and not settings.allows("+33612345678", "FR")


class FailingOnce(InMemoryStorage):
    """A store whose next shared-state write fails (a lost connection, say)."""

    fail = False

    def update_state(self, key: str, update: Callable[[str | None], str]) -> str:
        if self.fail:
            self.fail = False
            raise ConnectionError("the store went away")
        return super().update_state(key, update)


def test_a_store_that_fails_keeps_the_counts_for_the_next_flush_and_raises_nothing() -> None:
    store = FailingOnce()
    run = Run(FraudGuardSettings(min_volume=10, flush_seconds=0.0), store=store)
    store.fail = True
    assert run.request(number(PUMPED, 1)), "the guard fails open"
    run.request(number(PUMPED, 2))
    record = json.loads(store.get_state(f"fraud:prefix:{PUMPED}") or "{}")
    assert sum(b[1] for b in record["w"]) == 2
