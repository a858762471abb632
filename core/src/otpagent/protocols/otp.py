"""The values of the OTP store capability: a stored code and the outcomes of issuing and checking."""

from __future__ import annotations

import enum

import attrs

__all__ = ["OtpIssueOutcome", "OtpRecord", "OtpVerifyOutcome"]


@attrs.frozen(kw_only=True)
class OtpRecord:
    """A stored OTP: only the keyed hash of the code, never the code."""

    id: str
    recipient: str
    purpose: str
    code_hash: bytes
    created_at: float
    expires_at: float
    message_id: str | None = None
    consumed_at: float | None = None


class OtpIssueOutcome(enum.StrEnum):
    ISSUED = "issued"
    COOLDOWN = "cooldown"
    HOURLY_LIMIT = "hourly_limit"


class OtpVerifyOutcome(enum.StrEnum):
    VERIFIED = "verified"
    INVALID = "invalid"
    EXPIRED = "expired"
    LOCKED = "locked"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
