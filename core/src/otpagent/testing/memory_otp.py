"""The OTP store rules on an in-memory store: the same rules as :mod:`otpagent.storage.sqlrules`,
written over dicts (the caller holds the store's lock for the whole operation).
"""

from __future__ import annotations

import hmac

from otpagent.protocols import NewMessage, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.testing.memory_store import MemoryStore, prepare_message

__all__ = ["issue_otp", "redact_expired_secrets", "verify_otp"]


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
                          "invalidated_at": None}
    store.insert_message(prepared)
    return OtpIssueOutcome.ISSUED, 0.0


def verify_otp(store: MemoryStore, recipient: str, purpose: str, candidate_hash: bytes, *, max_failures: int,
               lockout_seconds: float, now: float) -> OtpVerifyOutcome:
    failures = 0
    if (fail := store.otp_failures.get(recipient)) is not None:
        if now - fail[1] >= lockout_seconds:
            del store.otp_failures[recipient]
        else:
            failures = fail[0]
    if failures >= max_failures:
        return OtpVerifyOutcome.LOCKED
    active = [o for o in store.otps.values() if (o["recipient"], o["purpose"]) == (recipient, purpose)
              and o["consumed_at"] is None and o["invalidated_at"] is None]
    row = max(active, key=lambda o: o["created_at"], default=None)
    stored = row["code_hash"] if row is not None else b"\0" * len(candidate_hash)
    # Compare even when there is no code, so timing does not tell whether one exists.
    matches = hmac.compare_digest(stored, candidate_hash) and row is not None
    if matches and row is not None and row["expires_at"] > now:
        row["consumed_at"] = now
        store.otp_failures.pop(recipient, None)
        return OtpVerifyOutcome.VERIFIED
    if matches:
        return OtpVerifyOutcome.EXPIRED
    first = store.otp_failures.get(recipient, (0, now))[1]
    # The try that reaches the limit restarts the window: a lockout lasts ``lockout_seconds``.
    store.otp_failures[recipient] = (failures + 1, now if failures + 1 >= max_failures else first)
    if failures + 1 >= max_failures:
        return OtpVerifyOutcome.TOO_MANY_ATTEMPTS
    return OtpVerifyOutcome.INVALID


def redact_expired_secrets(store: MemoryStore, now: float) -> int:
    expired = [row for row in store.messages.values()
               if row["secret"] is not None and row["expires_at"] is not None and row["expires_at"] < now]
    for row in expired:
        row["secret"] = None
    return len(expired)
