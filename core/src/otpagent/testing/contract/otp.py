"""Contract: OTP issue limits (cooldown, hourly cap, one active code) and verification rules."""

from __future__ import annotations

import pytest

from otpagent.model import MessageType, Status
from otpagent.protocols import OtpIssueOutcome, OtpStore, OtpVerifyOutcome, StorageBackend
from otpagent.testing.contract.base import ContractBase, claimed
from otpagent.testing.data import T0, issue, new, verify

__all__ = ["OtpStoreContract"]

ALICE = "+447700900123"
BOB = "+447700900456"


class OtpStoreContract(ContractBase):
    """OTP issue limits (cooldown, hourly cap, one active code) and verification rules."""

    def test_issuing_stores_the_code_and_enqueues_its_message(self, storage: StorageBackend,
                                                              otp_store: OtpStore) -> None:
        outcome, wait, message = issue(otp_store, ALICE, "111111")

        assert (outcome, wait) == (OtpIssueOutcome.ISSUED, 0.0)
        stored = storage.get_message(message.id)
        assert stored is not None
        assert (stored.status, stored.secret) == (Status.QUEUED, "111111")
        assert [e.type for e in storage.get_events(message.id)] == ["queued"]

    def test_a_resend_inside_the_cooldown_is_refused_with_the_wait(self, storage: StorageBackend,
                                                                   otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111", cooldown=30)

        outcome, wait, message = issue(otp_store, ALICE, "222222", now=T0 + 10, cooldown=30)
        after, _, _ = issue(otp_store, ALICE, "333333", now=T0 + 30, cooldown=30)

        assert outcome is OtpIssueOutcome.COOLDOWN
        assert wait == pytest.approx(20.0)
        assert storage.get_message(message.id) is None
        assert after is OtpIssueOutcome.ISSUED

    def test_the_cooldown_is_per_recipient(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111", cooldown=30)

        outcome, _, _ = issue(otp_store, BOB, "222222", now=T0 + 1, cooldown=30)

        assert outcome is OtpIssueOutcome.ISSUED

    def test_the_hourly_cap_refuses_until_the_oldest_code_is_an_hour_old(self, otp_store: OtpStore) -> None:
        for i in range(3):
            outcome = issue(otp_store, ALICE, f"00000{i}", now=T0 + i, cooldown=0, max_per_hour=3)[0]
            assert outcome is OtpIssueOutcome.ISSUED

        refused, wait, _ = issue(otp_store, ALICE, "999999", now=T0 + 10, cooldown=0, max_per_hour=3)
        allowed, _, _ = issue(otp_store, ALICE, "999999", now=T0 + 3600.5, cooldown=0, max_per_hour=3)

        assert refused is OtpIssueOutcome.HOURLY_LIMIT
        assert wait == pytest.approx(3590.0)
        assert allowed is OtpIssueOutcome.ISSUED

    def test_a_new_code_invalidates_the_previous_one(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111")
        issue(otp_store, ALICE, "222222", now=T0 + 60)

        old = verify(otp_store, ALICE, "111111", now=T0 + 61)
        new = verify(otp_store, ALICE, "222222", now=T0 + 62)

        assert (old, new) == (OtpVerifyOutcome.INVALID, OtpVerifyOutcome.VERIFIED)

    def test_codes_are_kept_per_purpose(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111", purpose="login")
        issue(otp_store, ALICE, "222222", purpose="reset", now=T0 + 60)

        assert verify(otp_store, ALICE, "111111", purpose="login", now=T0 + 61) is OtpVerifyOutcome.VERIFIED
        assert verify(otp_store, ALICE, "222222", purpose="reset", now=T0 + 61) is OtpVerifyOutcome.VERIFIED

    def test_the_right_code_verifies_once(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        first = verify(otp_store, ALICE, "123456", now=T0 + 5)
        second = verify(otp_store, ALICE, "123456", now=T0 + 6)

        assert (first, second) == (OtpVerifyOutcome.VERIFIED, OtpVerifyOutcome.INVALID)

    def test_a_wrong_code_and_an_unknown_recipient_are_both_invalid(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        assert verify(otp_store, ALICE, "000000", now=T0 + 1) is OtpVerifyOutcome.INVALID
        assert verify(otp_store, BOB, "123456", now=T0 + 1) is OtpVerifyOutcome.INVALID

    def test_failures_count_across_codes_and_the_hitting_try_says_too_many(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111")
        outcomes = [verify(otp_store, ALICE, "000000", now=T0 + i) for i in range(3)]
        issue(otp_store, ALICE, "222222", now=T0 + 60)

        outcomes += [verify(otp_store, ALICE, "000000", now=T0 + 61), verify(otp_store, ALICE, "000000", now=T0 + 62)]
        after = verify(otp_store, ALICE, "222222", now=T0 + 63)

        assert outcomes == [OtpVerifyOutcome.INVALID] * 4 + [OtpVerifyOutcome.TOO_MANY_ATTEMPTS]
        assert after is OtpVerifyOutcome.LOCKED

    def test_a_locked_recipient_is_refused_even_with_the_right_code(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")
        for i in range(3):
            verify(otp_store, ALICE, "000000", now=T0 + i, max_failures=3)

        assert verify(otp_store, ALICE, "123456", now=T0 + 10, max_failures=3) is OtpVerifyOutcome.LOCKED
        assert verify(otp_store, ALICE, "000000", now=T0 + 11, max_failures=3) is OtpVerifyOutcome.LOCKED

    def test_the_lockout_ends_after_the_lockout_window(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=3600)
        for _ in range(5):
            verify(otp_store, ALICE, "000000", now=T0 + 1, lockout=900)

        during = verify(otp_store, ALICE, "123456", now=T0 + 1 + 899, lockout=900)
        after = verify(otp_store, ALICE, "123456", now=T0 + 1 + 900, lockout=900)

        assert (during, after) == (OtpVerifyOutcome.LOCKED, OtpVerifyOutcome.VERIFIED)

    def test_the_lockout_lasts_a_whole_window_from_the_locking_try(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=3600)
        for _ in range(4):
            verify(otp_store, ALICE, "000000", now=T0, lockout=900)
        assert verify(otp_store, ALICE, "000000", now=T0 + 800, lockout=900) is OtpVerifyOutcome.TOO_MANY_ATTEMPTS

        during = verify(otp_store, ALICE, "123456", now=T0 + 800 + 899, lockout=900)
        after = verify(otp_store, ALICE, "123456", now=T0 + 800 + 900, lockout=900)

        assert (during, after) == (OtpVerifyOutcome.LOCKED, OtpVerifyOutcome.VERIFIED)

    def test_a_success_resets_the_failure_count(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111")
        for i in range(4):
            verify(otp_store, ALICE, "000000", now=T0 + i)
        assert verify(otp_store, ALICE, "111111", now=T0 + 5) is OtpVerifyOutcome.VERIFIED
        issue(otp_store, ALICE, "222222", now=T0 + 60)

        outcomes = [verify(otp_store, ALICE, "000000", now=T0 + 61 + i) for i in range(4)]

        assert outcomes == [OtpVerifyOutcome.INVALID] * 4

    def test_a_wrong_code_against_an_expired_code_is_invalid_and_counts(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=300)

        outcomes = [verify(otp_store, ALICE, "000000", now=T0 + 400 + i, max_failures=2) for i in range(3)]

        assert outcomes == [OtpVerifyOutcome.INVALID, OtpVerifyOutcome.TOO_MANY_ATTEMPTS, OtpVerifyOutcome.LOCKED]

    def test_the_right_code_after_expiry_is_expired(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=300)

        just_before = verify(otp_store, ALICE, "123456", now=T0 + 299.9)
        issue(otp_store, BOB, "654321", ttl=300)
        at_expiry = verify(otp_store, BOB, "654321", now=T0 + 300)

        assert (just_before, at_expiry) == (OtpVerifyOutcome.VERIFIED, OtpVerifyOutcome.EXPIRED)

    def test_expired_codes_are_redacted_whatever_the_status(self, storage: StorageBackend,
                                                             otp_store: OtpStore) -> None:
        sending = claimed(storage, message_type=MessageType.OTP, secret="333333", expires_at=T0 + 300)
        queued = new(message_type=MessageType.OTP, secret="111111", expires_at=T0 + 300)
        fresh = new(message_type=MessageType.OTP, secret="222222", expires_at=T0 + 900)
        storage.enqueue([queued, fresh], T0)

        redacted = otp_store.redact_expired_secrets(T0 + 301)

        assert redacted == 2
        assert storage.get_message(queued.message.id).secret is None  # type: ignore[union-attr]
        assert storage.get_message(sending).secret is None  # type: ignore[union-attr]
        assert storage.get_message(fresh.message.id).secret == "222222"  # type: ignore[union-attr]
        assert otp_store.redact_expired_secrets(T0 + 302) == 0
