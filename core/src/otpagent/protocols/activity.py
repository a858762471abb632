"""What the fleet did over a window of time, read back from storage.

Every state change of a message is written to the ``events`` table in the same transaction as
the change, and every attempt is a row of its own, whichever process made it. So counts over a
window read from there are the same from every process of a fleet, unlike the counters a
process keeps in memory (which start at zero in each process and only see that process's
work). :class:`~otpagent.protocols.capabilities.Housekeeping` answers three such reads, one
query each: ``event_counts`` (events by type in a window), ``attempt_counts`` (attempts by
channel in a window) and ``history`` (both, in equal buckets, for charts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

__all__ = ["ACTIVITY_EVENT_TYPES", "MAX_HISTORY_BUCKETS", "ActivityBucket", "AttemptTally", "total_attempts"]

#: The event types the activity reads count: every state a message moves to, and
#: ``retrying``/``fallback``. Not ``attempt``: attempts are counted from their own rows.
ACTIVITY_EVENT_TYPES = ("queued", "scheduled", "sent", "delivered", "read", "undelivered", "retrying", "fallback",
                        "failed", "expired", "cancelled")
#: ``history`` refuses to cut a window into more buckets than this.
MAX_HISTORY_BUCKETS = 10_000


@attrs.frozen(kw_only=True)
class AttemptTally:
    """Attempts by outcome; ``delivered``/``undelivered`` are accepted attempts a provider's
    callback later confirmed or refused."""

    accepted: int = 0
    transient: int = 0
    permanent: int = 0
    delivered: int = 0
    undelivered: int = 0

    @property
    def attempts(self) -> int:
        return self.accepted + self.transient + self.permanent

    @property
    def failed(self) -> int:
        """Attempts that did not get the message to the user: refused, or undelivered later."""
        return self.transient + self.permanent + self.undelivered

    def __add__(self, other: AttemptTally) -> AttemptTally:
        return AttemptTally(accepted=self.accepted + other.accepted, transient=self.transient + other.transient,
                            permanent=self.permanent + other.permanent, delivered=self.delivered + other.delivered,
                            undelivered=self.undelivered + other.undelivered)


@attrs.frozen(kw_only=True)
class ActivityBucket:
    """One slice ``[start, start + bucket_seconds)`` of a ``history`` read (the last slice also
    holds what happened at exactly ``until``)."""

    start: float
    events: Mapping[str, int] = attrs.field(factory=dict)
    attempts: AttemptTally = AttemptTally()

    def count(self, event_type: str) -> int:
        return int(self.events.get(event_type, 0))


def total_attempts(tallies: Iterable[AttemptTally]) -> AttemptTally:
    """Several channels' attempts together."""
    result = AttemptTally()
    for tally in tallies:
        result = result + tally
    return result
