"""The OTP policy (design §5): code generation, keyed hashing, sealing, admission and verification.

Codes come from ``secrets``; only ``HMAC-SHA256(key, recipient, purpose, code)`` is stored and
compared in constant time by the backend, and the code a queued message must carry is sealed
(:mod:`otpagent.otp_seal`). Both keys come from the master OTP secret, which never enters the
database (:mod:`otpagent.otp_keys`).

Wrong guesses count against the live code (``otp.max_attempts`` per code, then it is dead),
never against the recipient, and a global rate of failed verifications across the fleet
(``otp.global_failures_per_minute``) turns a distributed guessing attack into a slowdown:
while it is exceeded every verify is refused with :class:`RateLimited` before any code is
compared. Only guesses that met a live code count towards it, since only those could ever
succeed; guessing at numbers without a code costs an attacker's own budget (the service's
per-key and per-address failure budgets), not everyone's.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path

from otpagent.config import OtpConfig
from otpagent.errors import ConfigError, InvalidRequest, RateLimited
from otpagent.otp_keys import OtpKeys, load_otp_keys
from otpagent.otp_seal import CodeSealer
from otpagent.protocols import OtpStore, OtpVerifyOutcome, RateLimits, SharedState
from otpagent.ratelimit import Bucket
from otpagent.recipients import country_of, normalise_email, normalise_phone

__all__ = ["OtpPolicy", "generate_code", "normalise_recipient"]

#: The rate-limit bucket of failed verifications across the fleet.
_FAILURES_BUCKET = "otp:verify-failures"
#: Prefixed to a recipient that does not normalise: no code is ever stored under a key with a
#: space (no number or address normalises to one).
_NO_RECIPIENT = "unparsed "
#: The store's answers that are guesses against a live code (they could have succeeded).
_LIVE_CODE_FAILURES = frozenset({OtpVerifyOutcome.INVALID, OtpVerifyOutcome.TOO_MANY_ATTEMPTS})


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

    ``rate_limits`` may be None only when no limit that needs it is configured
    (``otp.per_country_per_minute``, ``otp.global_per_minute``, ``otp.global_failures_per_minute``).
    Build it with :meth:`start`, which loads the keys and puts away what older versions left.
    """

    def __init__(self, store: OtpStore, rate_limits: RateLimits | None, config: OtpConfig, keys: OtpKeys) -> None:
        self.store = store
        self.rate_limits = rate_limits
        self.config = config
        self.keys = keys
        #: Seals and opens the codes queued messages carry (the dispatcher opens them).
        self.sealer = CodeSealer(keys.secret)

    @classmethod
    def start(cls, store: OtpStore, state: SharedState, rate_limits: RateLimits | None, config: OtpConfig, *,
              base_dir: Path, now: float) -> OtpPolicy:
        """Load this worker's OTP keys (refusing a key the store's codes were not made with),
        then seal any code an older otpagent left in clear and delete its in-store key."""
        policy = cls(store, rate_limits, config, load_otp_keys(config, base_dir, state))
        store.seal_legacy_secrets(policy.sealer.seal, now)
        return policy

    def code_hash(self, recipient: str, purpose: str, code: str) -> bytes:
        msg = f"{recipient}\x00{purpose}\x00{code}".encode()
        return hmac.new(self.keys.hmac_key, msg, hashlib.sha256).digest()

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
                wait = self._limits(path).acquire(key, 60.0 / per_minute, max(1, per_minute // 4), now)
                if wait:
                    raise RateLimited(key.split(":")[1] + " velocity limit", wait)

    def verify(self, recipient: str, purpose: str, code: str, now: float,
               buckets: Sequence[Bucket] = ()) -> tuple[bool, str]:
        """Check a code: ``(True, "verified")`` or ``(False, reason)`` without an oracle.

        An unknown recipient and a wrong code get the same answer (``invalid``). Raises
        :class:`RateLimited`, comparing nothing, while the fleet's failure rate is exceeded, and
        :class:`~otpagent.errors.LimitsRefused` when ``buckets`` (the caller's limits, taken in the store's
        write) had no token.
        """
        bucket = self._failure_bucket()
        if bucket is not None:
            # A peek (a wait of -inf is never granted): a refused guess is never evaluated.
            wait = self._limits("otp.global_failures_per_minute").acquire(
                _FAILURES_BUCKET, *bucket, now, max_wait=float("-inf"))
            if wait > 0:
                raise RateLimited("too many failed OTP verifications across all callers", wait)
        try:
            key = normalise_recipient(recipient)
        except InvalidRequest:
            if not buckets:
                return False, OtpVerifyOutcome.INVALID.value
            # The caller's buckets are still taken, by the same write as any other guess; no
            # code is stored under a key that is not a normalised recipient, so none is found.
            key = _NO_RECIPIENT + recipient
        candidate = "".join(code.split()) if isinstance(code, str) else ""
        check = functools.partial(self.store.verify_otp, key, purpose, self.code_hash(key, purpose, candidate),
                                  max_attempts=self.config.max_attempts, now=now)
        outcome = check(buckets=buckets) if buckets else check()  # a store may predate ``buckets``
        if bucket is not None and outcome in _LIVE_CODE_FAILURES:
            # Always recorded (the debt is capped at one more burst), so concurrent guesses
            # that all passed the peek are all paid for.
            self._limits("otp.global_failures_per_minute").acquire(
                _FAILURES_BUCKET, *bucket, now, max_wait=bucket[0] * bucket[1])
        return outcome is OtpVerifyOutcome.VERIFIED, outcome.answer

    def _failure_bucket(self) -> tuple[float, int] | None:
        per_minute = self.config.global_failures_per_minute
        return (60.0 / per_minute, max(1, per_minute // 4)) if per_minute else None

    def _limits(self, path: str) -> RateLimits:
        if self.rate_limits is None:  # the agent's capability check rules this out
            raise ConfigError(path, "needs a storage backend with the rate limit capability")
        return self.rate_limits
