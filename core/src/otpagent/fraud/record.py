"""One prefix's (or country's) shared counts: a sliding window of buckets and a decayed baseline.

Stored as compact JSON under one shared state key, so a whole fleet adds to the same counts
with atomic ``update_state``. Its size is bounded: at most 30 window buckets of
``[index, sent, verified, refused]``, four baseline numbers and, while held, the hold.

Buckets leaving the window roll into the baseline (sent, verified and the seconds they cover,
all decayed with ``baseline_half_life_seconds``), so the baseline is "normal for this prefix"
over the last days. Refused requests never enter the baseline, and the window is emptied when a
hold starts, so an attack is never learnt as normal.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from otpagent.fraud.settings import FraudGuardSettings

__all__ = ["Hold", "Record", "Tally"]

WINDOW_BUCKETS = 30


@attrs.define
class Tally:
    """Counts to add: codes sent, codes verified, requests refused by a hold."""

    sent: int = 0
    verified: int = 0
    refused: int = 0

    def __bool__(self) -> bool:
        return bool(self.sent or self.verified or self.refused)


@attrs.frozen
class Hold:
    since: float
    until: float
    reason: str
    by: str = "guard"


@attrs.define
class Record:
    buckets: list[list[int]] = attrs.field(factory=list)
    base_sent: float = 0.0
    base_verified: float = 0.0
    base_seconds: float = 0.0
    #: The first bucket index the window starts at (everything before is in the baseline).
    base_end: int | None = None
    hold: Hold | None = None
    #: Consecutive holds (for the doubling) and when the last one ended.
    holds: int = 0
    last_hold_end: float = 0.0
    #: No automatic hold before this time (an operator released the prefix).
    grace_until: float = 0.0
    #: The ISO country of a prefix's record (for status).
    country: str | None = None
    #: Bumped at every change of the hold, so a late mirror write never undoes a newer one.
    version: int = 0

    def set_hold(self, hold: Hold | None) -> None:
        self.hold = hold
        self.version += 1

    # -- storage -------------------------------------------------------------------------------
    @classmethod
    def decode(cls, raw: str | None) -> Record:
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        hold = data.get("h")
        return cls(buckets=[list(b) for b in data.get("w", [])], base_sent=data.get("bs", 0.0),
                   base_verified=data.get("bv", 0.0), base_seconds=data.get("bt", 0.0), base_end=data.get("be"),
                   hold=Hold(**hold) if hold else None, holds=data.get("n", 0),
                   last_hold_end=data.get("ne", 0.0), grace_until=data.get("g", 0.0), country=data.get("c"),
                   version=data.get("v", 0))

    def encode(self) -> str:
        data: dict[str, Any] = {"w": self.buckets, "bs": round(self.base_sent, 3), "bv": round(self.base_verified, 3),
                                "bt": round(self.base_seconds, 1), "be": self.base_end}
        if self.hold is not None:
            data["h"] = attrs.asdict(self.hold)
        for key, value in (("n", self.holds), ("ne", self.last_hold_end), ("g", self.grace_until), ("c", self.country),
                           ("v", self.version)):
            if value:
                data[key] = value
        return json.dumps(data, separators=(",", ":"))

    # -- counting ------------------------------------------------------------------------------
    def advance(self, now: float, settings: FraudGuardSettings) -> None:
        """Roll buckets that left the window into the (decayed) baseline."""
        width = settings.bucket_seconds
        start = math.floor(now / width) - WINDOW_BUCKETS + 1
        if self.base_end is None:
            self.base_end = start
        if start <= self.base_end:
            return
        decay = 0.5 ** ((start - self.base_end) * width / settings.baseline_half_life_seconds)
        leaving = [b for b in self.buckets if b[0] < start]
        self.base_sent = self.base_sent * decay + sum(b[1] for b in leaving)
        self.base_verified = self.base_verified * decay + sum(b[2] for b in leaving)
        self.base_seconds = self.base_seconds * decay + (start - self.base_end) * width
        self.base_end = start
        self.buckets = [b for b in self.buckets if b[0] >= start]

    def add(self, tally: Tally, now: float, settings: FraudGuardSettings) -> None:
        self.advance(now, settings)
        if not tally:
            return
        index = math.floor(now / settings.bucket_seconds)
        bucket = next((b for b in self.buckets if b[0] == index), None)
        if bucket is None:
            bucket = [index, 0, 0, 0]
            self.buckets.append(bucket)
            self.buckets.sort(key=lambda b: b[0])
        bucket[1] += tally.sent
        bucket[2] += tally.verified
        bucket[3] += tally.refused

    def clear_window(self) -> None:
        self.buckets = []

    # -- reading -------------------------------------------------------------------------------
    def matured_sent(self, now: float, settings: FraudGuardSettings) -> int:
        """Codes sent in the window in buckets that ended at least the grace period ago."""
        width = settings.bucket_seconds
        return sum(b[1] for b in self.buckets if (b[0] + 1) * width <= now - settings.verify_grace_seconds)

    def window_totals(self) -> Tally:
        return Tally(sent=sum(b[1] for b in self.buckets), verified=sum(b[2] for b in self.buckets),
                     refused=sum(b[3] for b in self.buckets))

    def baseline_rate(self) -> float:
        """Requests per second before the window (0.0 without history)."""
        return self.base_sent / self.base_seconds if self.base_seconds > 0 else 0.0

    def baseline_conversion(self, min_volume: int) -> float | None:
        """Verified / sent before the window, or None with fewer than ``min_volume`` codes."""
        if self.base_sent < min_volume:
            return None
        return min(1.0, self.base_verified / self.base_sent)

    def held(self, now: float) -> bool:
        return self.hold is not None and now < self.hold.until
