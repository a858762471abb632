"""Contract: a load's messages and codes go in together, or not at all, and a rerun adds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from otpagent.model import MessageType, Priority
from otpagent.protocols import (
    BatchIssueResult,
    IdempotencyConflict,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    OtpStore,
    StorageBackend,
)
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, code_hash, issue, make_message, new

__all__ = ["BatchIssueContract"]

ALICE = "+447700900123"
BOB = "+447700900456"


def otp_item(recipient: str, code: str, *, key: str | None = None, fingerprint: str | None = None) -> OtpIssue:
    message = make_message(message_type=MessageType.OTP, secret=code, phone_number=recipient, now=T0,
                           priority=Priority.HIGH, expires_at=T0 + 300, idempotency_key=key)
    record = OtpRecord(id=uuid.uuid4().hex, recipient=recipient, purpose="login",
                       code_hash=code_hash(recipient, code), created_at=T0, expires_at=T0 + 300, message_id=message.id)
    return OtpIssue(otp=record, message=NewMessage(message=message, fingerprint=fingerprint))


def batch(otp_store: OtpStore, items: Sequence[NewMessage | OtpIssue], now: float = T0) -> BatchIssueResult:
    return otp_store.issue_batch(items, cooldown_seconds=30.0, max_per_hour=5, now=now)


class BatchIssueContract(ContractBase):
    """``OtpStore.issue_batch``: one transaction for a whole load."""

    def test_plain_messages_and_codes_are_written_together_in_order(self, storage: StorageBackend,
                                                                    otp_store: OtpStore) -> None:
        items: list[NewMessage | OtpIssue] = [new(), otp_item(ALICE, "111111"), new(), otp_item(BOB, "222222")]

        result = batch(otp_store, items)

        assert result.refused == ()
        assert [r.created for r in result.results] == [True] * 4
        for item, r in zip(items, result.results, strict=True):
            message = item.message.message if isinstance(item, OtpIssue) else item.message
            assert r.message_id == message.id and storage.get_message(message.id) is not None

    def test_one_refused_code_writes_nothing_and_every_refusal_is_listed(self, storage: StorageBackend,
                                                                         otp_store: OtpStore) -> None:
        issue(otp_store, ALICE, "000000")  # Alice is inside her resend cooldown from now on
        items: list[NewMessage | OtpIssue] = [new(), otp_item(BOB, "222222"), otp_item(ALICE, "111111")]

        result = batch(otp_store, items, now=T0 + 5)

        assert result.results == ()
        assert [(i, outcome) for i, outcome, _ in result.refused] == [(2, OtpIssueOutcome.COOLDOWN)]
        assert result.refused[0][2] == pytest.approx(25.0)
        for item in items:
            message = item.message.message if isinstance(item, OtpIssue) else item.message
            assert storage.get_message(message.id) is None, "nothing of a refused batch is written"
        assert issue(otp_store, BOB, "333333", now=T0 + 5)[0] is OtpIssueOutcome.ISSUED, "no code for Bob was kept"

    def test_a_rerun_under_the_same_keys_queues_nothing_twice(self, storage: StorageBackend,
                                                              otp_store: OtpStore) -> None:
        rerun = otp_item(ALICE, "999999", key="load-1:1", fingerprint="f1")
        first: list[NewMessage | OtpIssue] = [new(idempotency_key="load-1:0", fingerprint="f0"),
                                              otp_item(ALICE, "111111", key="load-1:1", fingerprint="f1")]
        again: list[NewMessage | OtpIssue] = [new(idempotency_key="load-1:0", fingerprint="f0"), rerun]

        one = batch(otp_store, first)
        two = batch(otp_store, again, now=T0 + 1)  # inside Alice's cooldown: no second code is even tried

        assert two.refused == ()
        assert [r.message_id for r in two.results] == [r.message_id for r in one.results]
        assert [r.created for r in two.results] == [False, False]
        assert storage.get_message(rerun.message.message.id) is None

    def test_a_key_reused_with_another_request_is_a_conflict_and_writes_nothing(
            self, storage: StorageBackend, otp_store: OtpStore) -> None:
        batch(otp_store, [otp_item(ALICE, "111111", key="k", fingerprint="f1")])
        fresh = new()

        with pytest.raises(IdempotencyConflict) as exc:
            batch(otp_store, [fresh, otp_item(BOB, "222222", key="k", fingerprint="other")], now=T0 + 60)

        assert exc.value.index == 1
        assert storage.get_message(fresh.message.id) is None
