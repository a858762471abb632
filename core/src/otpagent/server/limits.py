"""Abuse limits on the OTP endpoints: per API key, per client address and per recipient.

The buckets live in the storage backend (GCRA, the ``RateLimits`` capability), so the limits hold across
every process of a fleet. Recipients are hashed into the bucket key, so the rate-limit table
holds no phone numbers or email addresses.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

from otpagent.errors import ConfigError, InvalidRequest
from otpagent.otp import normalise_recipient
from otpagent.protocols import RateLimits
from otpagent.server.problems import Problem
from otpagent.server.settings import Limit

__all__ = ["check_limits"]


def check_limits(rate_limits: RateLimits | None, limits: Mapping[str, Limit | None], action: str, *, key_id: str,
                 client_ip: str, recipient: str | None, clock: Callable[[], float]) -> None:
    """Take one token from each bucket of ``action`` (``otp_send``/``otp_verify``); 429 when empty.

    All buckets are taken in one write, and only together: a request refused for one limit
    (say, its recipient's) does not use up the caller's other allowances. ``rate_limits`` is
    None only when no limit is configured (the app checks the capability when it is built).
    """
    subjects = {"per_key": key_id, "per_ip": client_ip, "per_recipient": _recipient_key(recipient)}
    scopes: list[str] = []
    buckets: list[tuple[str, float, int]] = []
    for scope, subject in subjects.items():
        limit = limits.get(f"{action}_{scope}")
        if limit is not None and subject is not None:
            scopes.append(scope)
            buckets.append((f"api:{action}:{scope}:{subject}", limit.interval, limit.burst))
    if not buckets:
        return
    if rate_limits is None:
        raise ConfigError("server.limits", "the storage backend provides no rate limits")
    waits = rate_limits.acquire_all(buckets, clock())
    if max(waits) > 0:
        longest = max(range(len(waits)), key=lambda i: waits[i])
        scope, seconds = scopes[longest], max(1, math.ceil(waits[longest]))
        raise Problem(429, f"too many requests ({action.replace('_', ' ')} {scope.replace('_', ' ')}); "
                           f"retry after {seconds} s", headers={"Retry-After": str(seconds)})


def _recipient_key(recipient: str | None) -> str | None:
    if not recipient:
        return None
    try:
        normal = normalise_recipient(recipient)
    except InvalidRequest:
        normal = recipient.strip().lower()
    return hashlib.sha256(normal.encode()).hexdigest()[:32]
