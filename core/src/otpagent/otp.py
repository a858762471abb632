"""The OTP policy (design §5): code generation, keyed hashing, admission and verification.

Codes come from ``secrets``; only ``HMAC-SHA256(server key, recipient, purpose, code)`` is stored
and it is compared in constant time by the backend. The server key comes from config
(``otp.secret``) or is generated once and kept in the store, shared by every worker.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from otpagent.config import OtpConfig
from otpagent.errors import ConfigError, InvalidRequest, RateLimited
from otpagent.protocols import OtpStore, OtpVerifyOutcome, RateLimits, SharedState
from otpagent.recipients import country_of, normalise_email, normalise_phone

__all__ = ["OtpPolicy", "generate_code", "normalise_recipient"]

_SERVER_KEY_STATE = "otp.server_key"


def generate_code(length: int) -> str:
    """A uniformly random decimal code of ``length`` digits (leading zeros allowed)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def normalise_recipient(recipient: str) -> str:
    """An email address or an E.164 number, normalised the way codes were issued.

    Email addresses are compared case-insensitively as a whole: people type ``Ada@`` and
    ``ada@`` for the same mailbox, and the code is bound to the person, not the spelling.
    """
    if "@" in recipient:
        return normalise_email(recipient, "recipient").lower()
    return normalise_phone(recipient, "recipient")


class OtpPolicy:
    """Applies the configured limits; the storage backend does the atomic parts.

    ``rate_limits`` may be None only when no velocity limit is configured
    (``otp.per_country_per_minute``, ``otp.global_per_minute``).
    """

    def __init__(self, store: OtpStore, state: SharedState, rate_limits: RateLimits | None,
                 config: OtpConfig) -> None:
        self.store = store
        self.rate_limits = rate_limits
        self.config = config
        key = config.secret or state.put_state(_SERVER_KEY_STATE, secrets.token_hex(32), only_if_absent=True)
        self._key = key.encode()

    def code_hash(self, recipient: str, purpose: str, code: str) -> bytes:
        msg = f"{recipient}\x00{purpose}\x00{code}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def admit(self, phone_number: str | None, now: float) -> None:
        """Refuse an OTP to a number outside the allow-list or over a pumping velocity limit."""
        if phone_number is None:
            return
        allowed = self.config.allowed_countries
        # Finding the country costs as much as parsing the number: only when a rule needs it.
        country = country_of(phone_number) if allowed or self.config.per_country_per_minute else None
        if allowed and country not in allowed:
            raise InvalidRequest.single(
                "phone_number", f"OTPs to {country or 'this number'!s} are not allowed (otp.allowed_countries)"
            )
        limits = (
            ("otp.per_country_per_minute", f"otp:country:{country}", self.config.per_country_per_minute),
            ("otp.global_per_minute", "otp:global", self.config.global_per_minute),
        )
        for path, key, per_minute in limits:
            if per_minute:
                if self.rate_limits is None:  # the agent's capability check rules this out
                    raise ConfigError(path, "needs a storage backend with the rate limit capability")
                wait = self.rate_limits.acquire(key, 60.0 / per_minute, max(1, per_minute // 4), now)
                if wait:
                    raise RateLimited(key.split(":")[1] + " velocity limit", wait)

    def verify(self, recipient: str, purpose: str, code: str, now: float) -> tuple[bool, str]:
        """Check a code: ``(True, "verified")`` or ``(False, reason)`` without an oracle.

        An unknown recipient and a wrong code get the same answer (``invalid``) and both count
        a failure, so probing numbers costs an attacker the same as guessing codes.
        """
        try:
            key = normalise_recipient(recipient)
        except InvalidRequest:
            return False, OtpVerifyOutcome.INVALID.value
        candidate = "".join(code.split()) if isinstance(code, str) else ""
        outcome = self.store.verify_otp(
            key, purpose, self.code_hash(key, purpose, candidate),
            max_failures=self.config.max_attempts, lockout_seconds=self.config.lockout_seconds, now=now,
        )
        return outcome is OtpVerifyOutcome.VERIFIED, outcome.value
