"""Fleet activity over a window, for the in-memory backend: the plain-Python answer to the
``event_counts``, ``attempt_counts`` and ``history`` reads of :class:`~otpagent.protocols.Housekeeping`.

The same rules as the SQL in :mod:`otpagent.storage.sqlreads`: events of the counted types by
``at``, attempts by ``finished_at``, both with ``since <= time <= now``; buckets of equal width
from ``since``, the last one also holding what happened at exactly ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from otpagent.protocols import ACTIVITY_EVENT_TYPES, ActivityBucket, AttemptTally
from otpagent.storage.sqlreads import history_buckets
from otpagent.testing.memory_store import MemoryStore

__all__ = ["attempt_counts", "event_counts", "history"]

_COUNTED = frozenset(ACTIVITY_EVENT_TYPES)


def _tally(rows: Iterable[dict[str, Any]]) -> AttemptTally:
    outcomes = {"accepted": 0, "transient": 0, "permanent": 0, "delivered": 0, "undelivered": 0}
    for a in rows:
        outcomes[a["outcome"]] += 1
        if a["delivery_status"] in ("delivered", "read"):
            outcomes["delivered"] += 1
        elif a["delivery_status"] in ("undelivered", "failed"):
            outcomes["undelivered"] += 1
    return AttemptTally(**outcomes)


def event_counts(s: MemoryStore, since: float, now: float) -> dict[str, int]:
    events: dict[str, int] = {}
    for _message_id, type_, at, _data in s.events.values():
        if type_ in _COUNTED and since <= at <= now:
            events[type_] = events.get(type_, 0) + 1
    return events


def attempt_counts(s: MemoryStore, since: float, now: float) -> dict[str, AttemptTally]:
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for a in s.attempts.values():
        if since <= a["finished_at"] <= now:
            by_channel.setdefault(a["channel"], []).append(a)
    return {channel: _tally(rows) for channel, rows in by_channel.items()}


def history(s: MemoryStore, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
    count = history_buckets(since, now, bucket_seconds)

    def bucket(at: float) -> int:
        return min(count - 1, math.floor((at - since) / bucket_seconds))

    events: list[dict[str, int]] = [{} for _ in range(count)]
    for _message_id, type_, at, _data in s.events.values():
        if type_ in _COUNTED and since <= at <= now:
            k = bucket(at)
            events[k][type_] = events[k].get(type_, 0) + 1
    attempts: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for a in s.attempts.values():
        if since <= a["finished_at"] <= now:
            attempts[bucket(a["finished_at"])].append(a)
    return [ActivityBucket(start=since + k * bucket_seconds, events=events[k], attempts=_tally(attempts[k]))
            for k in range(count)]
