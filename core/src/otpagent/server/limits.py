"""Abuse limits on the OTP endpoints: per API key, per client address and per recipient.

The buckets live in the storage backend (GCRA, ``storage.acquire``), so the limits hold across
every process of a fleet. Recipients are hashed into the bucket key, so the rate-limit table
holds no phone numbers or email addresses.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

from otpagent.errors import InvalidRequest
from otpagent.otp import normalise_recipient
from otpagent.protocols import StorageBackend
from otpagent.server.problems import Problem
from otpagent.server.settings import Limit

__all__ = ["check_limits"]


def check_limits(storage: StorageBackend, limits: Mapping[str, Limit | None], action: str, *, key_id: str,
                 client_ip: str, recipient: str | None, clock: Callable[[], float]) -> None:
    """Take one token from each bucket of ``action`` (``otp_send``/``otp_verify``); 429 when empty."""
    subjects = {"per_key": key_id, "per_ip": client_ip, "per_recipient": _recipient_key(recipient)}
    for scope, subject in subjects.items():
        limit = limits.get(f"{action}_{scope}")
        if limit is None or subject is None:
            continue
        wait = storage.acquire(f"api:{action}:{scope}:{subject}", limit.interval, limit.burst, clock())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
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
