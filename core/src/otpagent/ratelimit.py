"""GCRA (generic cell rate algorithm): the rate-limit arithmetic every storage backend shares.

A bucket is one number, its theoretical arrival time (TAT). Storing one float per key and
updating it in one transaction is what makes a limit hold across threads, processes and hosts.
"""

from __future__ import annotations

__all__ = ["gcra"]


def gcra(tat: float | None, now: float, interval: float, burst: int, cost: int = 1) -> tuple[float, float]:
    """Decide one request against a bucket.

    ``interval`` is seconds per token (1 / rate); ``burst`` is how many tokens may be taken at
    once. Returns ``(new_tat, retry_after)``: ``retry_after`` is 0.0 when allowed (store
    ``new_tat``), otherwise seconds until the request would be allowed (keep the old TAT).
    """
    if interval <= 0:
        return (tat or now), 0.0
    base = now if tat is None or tat < now else tat
    new_tat = base + interval * cost
    allow_at = new_tat - interval * max(burst, 1)
    if allow_at <= now:
        return new_tat, 0.0
    return (tat if tat is not None else now), allow_at - now
