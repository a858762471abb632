"""Abuse limits on the OTP endpoints: requests per API key, client address and recipient, and
the budget of failed verifications per API key and client address.

The buckets live in the storage backend (GCRA, the ``RateLimits`` capability), so the limits hold across
every process of a fleet. Recipients are hashed into the bucket key, so the rate-limit table
holds no phone numbers or email addresses.

The failure budget is the caller's, never the recipient's: a caller whose failed verifications
used it up is refused (429) *before* its guess is evaluated, so a refused guess costs no code
an attempt; each failure then takes a token. There is no verify limit per recipient, since
anyone could spend it and lock the number's owner out (the core counts wrong guesses against
the live code instead, and its global failure rate guards against a botnet spread over many
keys and addresses).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import NoReturn

import attrs

from otpagent.errors import ConfigError, InvalidRequest, LimitsRefused
from otpagent.otp import normalise_recipient
from otpagent.protocols import RateLimits
from otpagent.server.problems import Problem
from otpagent.server.settings import Limit

__all__ = ["RequestBuckets", "check_failure_budget", "record_failure", "request_buckets"]

#: Never granted: ``acquire`` with this ``max_wait`` only reports the bucket's wait (a peek).
_PEEK = float("-inf")


@attrs.frozen
class RequestBuckets:
    """The buckets one OTP request takes (``otp_send``/``otp_verify``: per key, per address,
    per recipient), handed to the agent's call (``buckets=``) so the storage takes them in the
    same write as the code's issue or check: all or none, a request refused for one limit (say,
    its recipient's) does not use up the caller's other allowances."""

    action: str
    scopes: tuple[str, ...]
    buckets: tuple[tuple[str, float, int], ...]

    def refused(self, exc: LimitsRefused) -> NoReturn:
        """The 429 for a refusal of these buckets: the limit with the longest wait, and that wait."""
        longest = max(range(len(exc.waits)), key=exc.waits.__getitem__)
        _refuse(f"{self.action.replace('_', ' ')} {self.scopes[longest].replace('_', ' ')}", exc.waits[longest])


def request_buckets(limits: Mapping[str, Limit | None], action: str, *, key_id: str, client_ip: str,
                    recipient: str | None) -> RequestBuckets:
    """The configured buckets of ``action`` for this caller (none when every limit is off)."""
    subjects = {"per_key": key_id, "per_ip": client_ip, "per_recipient": _recipient_key(recipient)}
    scopes: list[str] = []
    buckets: list[tuple[str, float, int]] = []
    for scope, subject in subjects.items():
        limit = limits.get(f"{action}_{scope}")
        if limit is not None and subject is not None:
            scopes.append(scope)
            buckets.append((f"api:{action}:{scope}:{subject}", limit.interval, limit.burst))
    return RequestBuckets(action, tuple(scopes), tuple(buckets))


def check_failure_budget(rate_limits: RateLimits | None, limits: Mapping[str, Limit | None], *, key_id: str,
                         client_ip: str, clock: Callable[[], float]) -> None:
    """429 when the caller's failed verifications used up its budget (per key or per address),
    without taking anything: call it before the guess is evaluated."""
    buckets = _failure_buckets(limits, key_id, client_ip)
    if not buckets:
        return
    now = clock()
    waits = {scope: _limits(rate_limits).acquire(key, limit.interval, limit.burst, now, max_wait=_PEEK)
             for scope, key, limit in buckets}
    scope = max(waits, key=lambda s: waits[s])
    if waits[scope] > 0:
        _refuse(f"failed OTP verifications {scope.replace('_', ' ')}", waits[scope])


def record_failure(rate_limits: RateLimits | None, limits: Mapping[str, Limit | None], *, key_id: str,
                   client_ip: str, clock: Callable[[], float]) -> None:
    """Take a token from the caller's failure budgets for one failed verification.

    Always taken, even below zero (up to one more burst), so that concurrent guesses that all
    passed :func:`check_failure_budget` are all paid for and the caller waits the longer.
    """
    now = clock()
    for _scope, key, limit in _failure_buckets(limits, key_id, client_ip):
        _limits(rate_limits).acquire(key, limit.interval, limit.burst, now, max_wait=limit.interval * limit.burst)


def _failure_buckets(limits: Mapping[str, Limit | None], key_id: str,
                     client_ip: str) -> list[tuple[str, str, Limit]]:
    out = []
    for scope, subject in (("per_key", key_id), ("per_ip", client_ip)):
        limit = limits.get(f"otp_verify_failures_{scope}")
        if limit is not None:
            out.append((scope, f"api:otp_verify_failures:{scope}:{subject}", limit))
    return out


def _limits(rate_limits: RateLimits | None) -> RateLimits:
    if rate_limits is None:
        raise ConfigError("server.limits", "the storage backend provides no rate limits")
    return rate_limits


def _refuse(what: str, wait: float) -> NoReturn:
    seconds = max(1, math.ceil(wait))
    raise Problem(429, f"too many requests ({what}); retry after {seconds} s", headers={"Retry-After": str(seconds)})


def _recipient_key(recipient: str | None) -> str | None:
    if not recipient:
        return None
    try:
        normal = normalise_recipient(recipient)
    except InvalidRequest:
        normal = recipient.strip().lower()
    return hashlib.sha256(normal.encode()).hexdigest()[:32]
