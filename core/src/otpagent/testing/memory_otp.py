"""The OTP store rules on an in-memory store: the same rules as :mod:`otpagent.storage.sqlrules`,
written over dicts (the caller holds the store's lock for the whole operation).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from otpagent.otp_seal import is_sealed
from otpagent.protocols import LEGACY_OTP_KEY_STATE, NewMessage, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.testing.memory_store import MemoryStore, prepare_message

__all__ = ["issue_otp", "redact_expired_secrets", "seal_legacy_secrets", "verify_otp"]


def issue_otp(store: MemoryStore, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float,
              max_per_hour: int, now: float) -> tuple[OtpIssueOutcome, float]:
    recent = sorted(o["created_at"] for o in store.otps.values()
                    if o["recipient"] == otp.recipient and o["created_at"] > now - 3600.0)
    if recent and now - recent[-1] < cooldown_seconds:
        return OtpIssueOutcome.COOLDOWN, recent[-1] + cooldown_seconds - now
    if len(recent) >= max_per_hour:
        return OtpIssueOutcome.HOURLY_LIMIT, recent[-max_per_hour] + 3600.0 - now
    prepared = prepare_message(message.message, message.fingerprint, now)
    for o in store.otps.values():
        if (o["recipient"], o["purpose"]) == (otp.recipient, otp.purpose) and o["consumed_at"] is None \
                and o["invalidated_at"] is None:
            o["invalidated_at"] = now
    store.otps[otp.id] = {"id": otp.id, "recipient": otp.recipient, "purpose": otp.purpose,
                          "code_hash": bytes(otp.code_hash), "created_at": otp.created_at,
                          "expires_at": otp.expires_at, "message_id": otp.message_id, "consumed_at": None,
                          "invalidated_at": None, "failures": 0}
    store.insert_message(prepared)
    return OtpIssueOutcome.ISSUED, 0.0


def verify_otp(store: MemoryStore, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int,
               now: float) -> OtpVerifyOutcome:
    live = [o for o in store.otps.values() if (o["recipient"], o["purpose"]) == (recipient, purpose)
            and o["consumed_at"] is None and o["invalidated_at"] is None]
    row = max(live, key=lambda o: o["created_at"], default=None)
    stored = row["code_hash"] if row is not None else b"\0" * len(candidate_hash)
    # Compare even when there is no code, so timing does not tell whether one exists.
    matches = hmac.compare_digest(stored, candidate_hash)
    if row is None or row["failures"] >= max_attempts:
        return OtpVerifyOutcome.NO_LIVE_CODE
    unexpired = row["expires_at"] > now
    if matches:
        if not unexpired:
            return OtpVerifyOutcome.EXPIRED
        row["consumed_at"] = now
        return OtpVerifyOutcome.VERIFIED
    if not unexpired:
        return OtpVerifyOutcome.NO_LIVE_CODE
    row["failures"] += 1
    if row["failures"] >= max_attempts:
        row["invalidated_at"] = now  # the code is dead
        return OtpVerifyOutcome.TOO_MANY_ATTEMPTS
    return OtpVerifyOutcome.INVALID


def seal_legacy_secrets(store: MemoryStore, seal: Callable[[str, str], str], now: float) -> int:
    # Every new value first, then the writes: a ``seal`` that raises leaves the store as it was.
    sealed: dict[str, str | None] = {}
    for message_id, row in store.messages.items():
        secret = row["secret"]
        if secret is not None and not is_sealed(secret):
            expired = row["expires_at"] is not None and row["expires_at"] < now
            sealed[message_id] = None if expired else seal(message_id, secret)
    for message_id, value in sealed.items():
        store.messages[message_id]["secret"] = value
    return len(sealed) + (store.state.pop(LEGACY_OTP_KEY_STATE, None) is not None)


def redact_expired_secrets(store: MemoryStore, now: float) -> int:
    expired = [row for row in store.messages.values()
               if row["secret"] is not None and row["expires_at"] is not None and row["expires_at"] < now]
    for row in expired:
        row["secret"] = None
    return len(expired)
