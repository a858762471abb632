"""A small learned distribution of delays (time to deliver, time until a provider's report).

Delays span milliseconds to hours and matter on a log scale (4 s against 8 s is as different as
1 min against 2 min), so the histogram has log-spaced bins. Old samples fade by ``keep`` per new
sample, so the distribution follows a provider whose delivery slows down. Quantiles interpolate
within their bin; shares count whole bins. A few hundred bytes of JSON, shared through storage
like the rest of adaptive state.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import attrs

__all__ = ["EDGES", "DelayHistogram"]

#: Upper edges of the bins in seconds; a last, open bin takes everything slower.
EDGES: tuple[float, ...] = (0.5, 1, 2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 90, 120, 180, 240,
                            300, 450, 600, 900, 1200, 1800, 2700, 3600, 7200)


@attrs.frozen
class DelayHistogram:
    """Fading counts per bin of :data:`EDGES` (plus one open bin)."""

    counts: tuple[float, ...] = ()

    @property
    def weight(self) -> float:
        return sum(self.counts)

    def added(self, seconds: float, keep: float) -> DelayHistogram:
        """With one more sample; every older sample counts ``keep`` times what it did."""
        counts = list(self.counts) or [0.0] * (len(EDGES) + 1)
        counts = [c * keep for c in counts]
        counts[bisect.bisect_left(EDGES, max(0.0, seconds))] += 1.0
        return DelayHistogram(tuple(counts))

    def quantile(self, q: float) -> float | None:
        """The delay that ``q`` of the samples do not exceed, interpolated within its bin; None
        without data. Beyond the last edge it is the last edge doubled."""
        total = self.weight
        if total <= 0:
            return None
        running = 0.0
        for i, count in enumerate(self.counts):
            if count > 0 and running + count >= q * total - 1e-12:
                if i >= len(EDGES):
                    return 2 * EDGES[-1]
                low = EDGES[i - 1] if i > 0 else 0.0
                return low + (EDGES[i] - low) * max(0.0, q * total - running) / count
            running += count
        return 2 * EDGES[-1]

    def share_within(self, seconds: float) -> float | None:
        """The share of samples at or below ``seconds`` (whole bins), None without data."""
        total = self.weight
        if total <= 0:
            return None
        return sum(self.counts[: bisect.bisect_right(EDGES, seconds)]) / total

    def to_list(self) -> list[float]:
        return [round(c, 6) for c in self.counts]

    @classmethod
    def from_list(cls, raw: Sequence[float] | None) -> DelayHistogram:
        if not raw or len(raw) != len(EDGES) + 1:
            return cls()
        return cls(tuple(float(c) for c in raw))
