"""Exponential backoff with jitter: how long to wait before the next try of anything.

One function for the dispatcher's retries of a send and the webhook sink's retries of a
delivery. They differ only in how much of the window the jitter may take: a send's retries
spread over the whole window (``floor=0``, "full jitter": contending workers desynchronise best),
while a webhook delivery waits at least half its schedule (``floor=0.5``, "equal jitter": a
receiver that is down is not hit again early).
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random, *, floor: float = 0.0) -> float:
    """The wait before try ``attempt + 1``: uniform in ``[floor * w, w]`` where ``w`` is
    ``min(cap, base * 2**(attempt - 1))``."""
    window = min(cap, base * float(2 ** min(max(0, attempt - 1), 60)))
    return window * rng.uniform(floor, 1.0)
