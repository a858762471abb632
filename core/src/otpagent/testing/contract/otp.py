"""Contract: OTP issue limits (cooldown, hourly cap, one live code), verification rules (wrong
guesses count against the live code, never against the recipient), and sealing legacy codes."""

from __future__ import annotations

import pytest

from otpagent.errors import LimitsRefused
from otpagent.model import MessageType, Status
from otpagent.protocols import OtpIssueOutcome, OtpStore, OtpVerifyOutcome, SharedState, StorageBackend
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

        assert (first, second) == (OtpVerifyOutcome.VERIFIED, OtpVerifyOutcome.NO_LIVE_CODE)

    def test_a_wrong_code_and_an_unknown_recipient_both_answer_invalid(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        wrong = verify(otp_store, ALICE, "000000", now=T0 + 1)
        unknown = verify(otp_store, BOB, "123456", now=T0 + 1)

        assert (wrong, unknown) == (OtpVerifyOutcome.INVALID, OtpVerifyOutcome.NO_LIVE_CODE)
        assert wrong.answer == unknown.answer == "invalid"

    def test_wrong_guesses_use_up_the_live_code_and_the_last_one_kills_it(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")

        outcomes = [verify(otp_store, ALICE, "000000", now=T0 + i, max_attempts=3) for i in range(3)]
        right_code_after = verify(otp_store, ALICE, "123456", now=T0 + 10, max_attempts=3)
        wrong_code_after = verify(otp_store, ALICE, "000000", now=T0 + 11, max_attempts=3)

        assert outcomes == [OtpVerifyOutcome.INVALID, OtpVerifyOutcome.INVALID, OtpVerifyOutcome.TOO_MANY_ATTEMPTS]
        assert right_code_after is OtpVerifyOutcome.NO_LIVE_CODE, "a dead code never verifies"
        assert wrong_code_after is OtpVerifyOutcome.NO_LIVE_CODE, "after the kill, guesses read as an unknown number"

    def test_the_right_code_within_the_attempts_verifies(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")
        for i in range(4):
            verify(otp_store, ALICE, "000000", now=T0 + i)

        assert verify(otp_store, ALICE, "123456", now=T0 + 5) is OtpVerifyOutcome.VERIFIED

    def test_guesses_against_a_number_without_a_live_code_count_against_nobody(self, otp_store: OtpStore) -> None:
        strangers = [verify(otp_store, BOB, f"{i:06d}", now=T0 + i) for i in range(100)]
        issue(otp_store, BOB, "654321", now=T0 + 200)

        owner = [verify(otp_store, BOB, "000000", now=T0 + 201 + i) for i in range(4)]
        owner.append(verify(otp_store, BOB, "654321", now=T0 + 210))

        assert set(strangers) == {OtpVerifyOutcome.NO_LIVE_CODE}
        assert owner == [OtpVerifyOutcome.INVALID] * 4 + [OtpVerifyOutcome.VERIFIED], \
            "the owner's new code has every attempt, whatever strangers guessed before it existed"

    def test_a_new_code_comes_with_its_own_attempts(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111")
        first = [verify(otp_store, ALICE, "000000", now=T0 + i, max_attempts=3) for i in range(3)]
        issue(otp_store, ALICE, "222222", now=T0 + 60)

        second = [verify(otp_store, ALICE, "000000", now=T0 + 61 + i, max_attempts=3) for i in range(2)]
        right = verify(otp_store, ALICE, "222222", now=T0 + 70, max_attempts=3)

        assert first[-1] is OtpVerifyOutcome.TOO_MANY_ATTEMPTS
        assert (second, right) == ([OtpVerifyOutcome.INVALID] * 2, OtpVerifyOutcome.VERIFIED)

    def test_guesses_at_one_purpose_do_not_use_up_another(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111", purpose="login")
        issue(otp_store, ALICE, "222222", purpose="reset", now=T0 + 60)
        for i in range(5):
            verify(otp_store, ALICE, "000000", purpose="login", now=T0 + 61 + i)

        assert verify(otp_store, ALICE, "222222", purpose="reset", now=T0 + 70) is OtpVerifyOutcome.VERIFIED

    def test_a_code_that_used_up_a_lowered_limit_is_dead(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")
        for i in range(3):
            verify(otp_store, ALICE, "000000", now=T0 + i, max_attempts=10)

        assert verify(otp_store, ALICE, "123456", now=T0 + 5, max_attempts=3) is OtpVerifyOutcome.NO_LIVE_CODE

    def test_wrong_guesses_against_an_expired_code_count_nothing(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=300)

        outcomes = [verify(otp_store, ALICE, "000000", now=T0 + 400 + i, max_attempts=2) for i in range(3)]
        right = verify(otp_store, ALICE, "123456", now=T0 + 500, max_attempts=2)

        assert outcomes == [OtpVerifyOutcome.NO_LIVE_CODE] * 3
        assert right is OtpVerifyOutcome.EXPIRED

    def test_the_right_code_after_expiry_is_expired(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456", ttl=300)

        just_before = verify(otp_store, ALICE, "123456", now=T0 + 299.9)
        issue(otp_store, BOB, "654321", ttl=300)
        at_expiry = verify(otp_store, BOB, "654321", now=T0 + 300)

        assert (just_before, at_expiry) == (OtpVerifyOutcome.VERIFIED, OtpVerifyOutcome.EXPIRED)

    # -- the caller's rate limits, taken by the same call (``buckets=``) --------------------------
    def test_an_issue_takes_its_buckets_and_a_refused_one_writes_nothing(self, storage: StorageBackend,
                                                                          otp_store: OtpStore) -> None:
        _, _, alice = issue(otp_store, ALICE, "111111", buckets=[("api:key", 60.0, 1)])

        with pytest.raises(LimitsRefused) as refused:
            issue(otp_store, BOB, "222222", now=T0 + 1, cooldown=30, buckets=[("api:key", 60.0, 1)])

        assert refused.value.keys == ("api:key",)
        assert refused.value.waits == pytest.approx((59.0,))
        assert [m.id for m in storage.claim_due("w1", 10, 30.0, T0 + 2)] == [alice.id], "no message for Bob"
        assert verify(otp_store, BOB, "222222", now=T0 + 2) is OtpVerifyOutcome.NO_LIVE_CODE
        assert issue(otp_store, BOB, "333333", now=T0 + 3, cooldown=30)[0] is OtpIssueOutcome.ISSUED, \
            "a refused issue starts no resend cooldown"

    def test_an_issue_takes_every_bucket_or_none(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "111111", buckets=[("full", 60.0, 1)])

        with pytest.raises(LimitsRefused) as refused:
            issue(otp_store, BOB, "222222", now=T0 + 1, buckets=[("free", 60.0, 3), ("full", 60.0, 1)])
        granted = [issue(otp_store, f"+4477009001{i:02d}", "333333", now=T0 + 1, buckets=[("free", 60.0, 3)])[0]
                   for i in range(3)]

        assert refused.value.waits == pytest.approx((0.0, 59.0))
        assert granted == [OtpIssueOutcome.ISSUED] * 3, "the refused call took nothing from the bucket it could have"
        with pytest.raises(LimitsRefused):
            issue(otp_store, BOB, "444444", now=T0 + 1, buckets=[("free", 60.0, 3)])

    def test_a_refused_verify_compares_and_counts_nothing(self, otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "123456")
        wrong = verify(otp_store, ALICE, "000000", now=T0 + 1, max_attempts=2, buckets=[("api:ip", 60.0, 1)])

        with pytest.raises(LimitsRefused):
            verify(otp_store, ALICE, "999999", now=T0 + 2, max_attempts=2, buckets=[("api:ip", 60.0, 1)])
        with pytest.raises(LimitsRefused):
            verify(otp_store, ALICE, "123456", now=T0 + 3, max_attempts=2, buckets=[("api:ip", 60.0, 1)])
        right = verify(otp_store, ALICE, "123456", now=T0 + 4, max_attempts=2)

        assert wrong is OtpVerifyOutcome.INVALID
        assert right is OtpVerifyOutcome.VERIFIED, "the refused guesses neither counted nor consumed the code"

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

    def test_legacy_clear_codes_are_sealed_and_the_legacy_key_deleted(self, storage: StorageBackend,
                                                                      otp_store: OtpStore,
                                                                      shared_state: SharedState) -> None:
        live = new(message_type=MessageType.OTP, secret="111111", expires_at=T0 + 300)
        expired = new(message_type=MessageType.OTP, secret="222222", expires_at=T0 + 10)
        sealed = new(message_type=MessageType.OTP, secret="enc1:already-sealed", expires_at=T0 + 300)
        storage.enqueue([live, expired, sealed], T0)
        shared_state.put_state("otp.server_key", "a" * 64)
        shared_state.put_state("other", "kept")
        calls: list[tuple[str, str]] = []

        def seal(message_id: str, code: str) -> str:
            calls.append((message_id, code))
            return f"enc1:sealed-{code}"

        changed = otp_store.seal_legacy_secrets(seal, T0 + 20)

        assert changed == 3  # one sealed, one cleared, the key deleted
        assert calls == [(live.message.id, "111111")]
        assert storage.get_message(live.message.id).secret == "enc1:sealed-111111"  # type: ignore[union-attr]
        assert storage.get_message(expired.message.id).secret is None  # type: ignore[union-attr]
        assert storage.get_message(sealed.message.id).secret == "enc1:already-sealed"  # type: ignore[union-attr]
        assert shared_state.get_state("otp.server_key") is None
        assert shared_state.get_state("other") == "kept"
        assert otp_store.seal_legacy_secrets(seal, T0 + 21) == 0, "nothing left to do the second time"

    def test_sealing_legacy_codes_is_all_or_nothing(self, storage: StorageBackend, otp_store: OtpStore,
                                                    shared_state: SharedState) -> None:
        first = new(message_type=MessageType.OTP, secret="111111", expires_at=T0 + 300)
        second = new(message_type=MessageType.OTP, secret="222222", expires_at=T0 + 300)
        storage.enqueue([first, second], T0)
        shared_state.put_state("otp.server_key", "a" * 64)
        sealed: list[str] = []

        def seal_once(message_id: str, code: str) -> str:
            if sealed:
                raise RuntimeError("no key")
            sealed.append(message_id)
            return "enc1:x"

        with pytest.raises(RuntimeError, match="no key"):
            otp_store.seal_legacy_secrets(seal_once, T0 + 1)

        secrets = {storage.get_message(i.message.id).secret for i in (first, second)}  # type: ignore[union-attr]
        assert secrets == {"111111", "222222"}
        assert shared_state.get_state("otp.server_key") == "a" * 64
