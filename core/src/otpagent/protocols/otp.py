"""The values of the OTP store capability: a stored code and the outcomes of issuing and checking."""

from __future__ import annotations

import enum

import attrs

from otpagent.protocols.storage import EnqueueResult, NewMessage

__all__ = ["LEGACY_OTP_KEY_STATE", "BatchIssueResult", "OtpIssue", "OtpIssueOutcome", "OtpRecord", "OtpVerifyOutcome"]

#: The shared state key where otpagent before sealed codes kept its generated OTP HMAC key;
#: ``OtpStore.seal_legacy_secrets`` deletes it.
LEGACY_OTP_KEY_STATE = "otp.server_key"


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
    """What one guess did. The first four are what callers answer; :data:`NO_LIVE_CODE` is
    answered as ``invalid`` too (no oracle), and says that the guess was compared with nothing
    and counted against no code, so it can never have succeeded.
    """

    #: The live code matched: it is consumed.
    VERIFIED = "verified"
    #: A wrong guess against the live code: one of its attempts is used up.
    INVALID = "invalid"
    #: The right code after its expiry (only someone holding the code learns this).
    EXPIRED = "expired"
    #: The wrong guess that used up the live code's last attempt: the code is dead.
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    #: No live code for the recipient and purpose (none issued, consumed, replaced, dead or
    #: expired): nothing was counted anywhere.
    NO_LIVE_CODE = "no_live_code"

    @property
    def answer(self) -> str:
        """The reason a caller is given: ``no_live_code`` reads ``invalid``, like a wrong code."""
        return "invalid" if self is OtpVerifyOutcome.NO_LIVE_CODE else self.value


@attrs.frozen(kw_only=True)
class OtpIssue:
    """One code to issue in a batch: its record and the message that carries it."""

    otp: OtpRecord
    message: NewMessage


@attrs.frozen(kw_only=True)
class BatchIssueResult:
    """What ``OtpStore.issue_batch`` did: one result per item, in order, or (when ``refused``
    is not empty) nothing at all."""

    results: tuple[EnqueueResult, ...] = ()
    #: ``(index, outcome, seconds until allowed)`` of each code the resend limits refused; when
    #: any is, the whole batch was written to nothing.
    refused: tuple[tuple[int, OtpIssueOutcome, float], ...] = ()
