"""GCRA (generic cell rate algorithm): the rate-limit arithmetic every storage backend shares.

A bucket is one number, its theoretical arrival time (TAT). Storing one float per key and
updating it in one transaction is what makes a limit hold across threads, processes and hosts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from otpagent.errors import FieldError, InvalidRequest, LimitsRefused

__all__ = ["Bucket", "checked_buckets", "gcra", "require_granted", "take_all"]

#: A rate-limit bucket: ``(key, interval, burst)``, one token per ``interval`` seconds, ``burst`` at most.
Bucket = tuple[str, float, int]


def gcra(tat: float | None, now: float, interval: float, burst: int, cost: int = 1,
         max_wait: float = 0.0) -> tuple[float, float]:
    """Decide one request against a bucket.

    ``interval`` is seconds per token (1 / rate); ``burst`` is how many tokens may be taken at
    once. Returns ``(new_tat, wait)``. The request is granted when ``wait <= max_wait``: store
    ``new_tat``; the caller may act after ``wait`` seconds (0.0 with the default ``max_wait``).
    Otherwise it is refused, ``new_tat`` is the unchanged TAT and ``wait`` says how long until
    it would be allowed. Reserving a slot a little ahead (``max_wait`` > 0) spares callers the
    thundering herd of everyone retrying at the same instant when a bucket is empty.
    """
    if interval <= 0:
        return (tat or now), 0.0
    base = now if tat is None or tat < now else tat
    new_tat = base + interval * cost
    wait = new_tat - interval * max(burst, 1) - now
    if wait <= max_wait:
        return new_tat, max(0.0, wait)
    return (tat if tat is not None else now), wait


def take_all(stored: Mapping[str, float | None], buckets: Sequence[tuple[str, float, int]], now: float,
             cost: int = 1, max_wait: float = 0.0) -> tuple[list[float], list[tuple[str, float]]]:
    """The rule of ``RateLimits.acquire_all`` (and of ``acquire``, one bucket with its ``cost``
    and ``max_wait``): ``cost`` tokens from every bucket ``(key, interval, burst)`` (distinct
    keys), or from none, given each bucket's stored TAT (missing or None when fresh). A backend
    reads (and locks) the buckets, then stores what this returns.

    Returns each bucket's wait in the order given, as :func:`gcra` reports it (at most
    ``max_wait`` where the bucket grants: 0.0 with the default; above it where it refuses), and
    the ``(key, new TAT)`` pairs to store, which are none when any bucket refused.
    """
    decided = [gcra(stored.get(key), now, interval, burst, cost, max_wait) for key, interval, burst in buckets]
    waits = [wait for _, wait in decided]
    if any(wait > max_wait for wait in waits):
        return waits, []
    return waits, [(key, new_tat) for (key, _, _), (new_tat, _) in zip(buckets, decided, strict=True)]


def require_granted(buckets: Sequence[Bucket], waits: Sequence[float]) -> None:
    """Raise :class:`~otpagent.errors.LimitsRefused` when ``waits`` (what ``acquire_all`` of
    ``buckets`` answered) refused: the ``buckets=`` rule of ``OtpStore.issue_otp`` and
    ``verify_otp``, where a refusal must write nothing else."""
    if waits and max(waits) > 0:
        raise LimitsRefused([key for key, _, _ in buckets], waits)


def checked_buckets(buckets: object) -> list[Bucket]:
    """``buckets=`` as a caller of ``send_otp``/``verify_otp`` gave them, checked: each a
    ``(key, interval, burst)`` with a non-empty key, an interval >= 0 and a burst >= 1, no key
    twice. Raises :class:`~otpagent.errors.InvalidRequest` naming each bad entry."""
    if not isinstance(buckets, (list, tuple)):
        raise InvalidRequest.single("buckets", "must be a list of (key, interval, burst), "
                                               f"got {type(buckets).__name__}")
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, bucket in enumerate(buckets):
        field = f"buckets[{i}]"
        if not isinstance(bucket, (list, tuple)) or len(bucket) != 3:
            errors.append(FieldError(field, "must be (key, interval, burst)"))
            continue
        key, interval, burst = bucket
        if not isinstance(key, str) or not key:
            errors.append(FieldError(field, f"key must be a non-empty string, got {key!r}"))
        elif key in seen:
            errors.append(FieldError(field, f"key {key!r} is given twice"))
        else:
            seen.add(key)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 0:
            errors.append(FieldError(field, f"interval must be seconds >= 0, got {interval!r}"))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            errors.append(FieldError(field, f"burst must be an integer >= 1, got {burst!r}"))
    if errors:
        raise InvalidRequest(errors)
    return [(str(key), float(interval), int(burst)) for key, interval, burst in buckets]
