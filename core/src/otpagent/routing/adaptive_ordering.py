"""How ``adaptive`` orders channels from what it believes of each one (pure functions).

- CRITICAL: most likely to deliver first, whatever it costs (an OTP's channels that cannot
  deliver within the code's lifetime still go last).
- OTP: the channels *in time* come first: those that, tried first, reach the person within
  their patience (``otp_deliver_within_seconds``) at least ``IN_TIME_SHARE`` of the time, either
  themselves or through a fallback once their failure is reported (:func:`in_time`), cheapest
  per delivered message first; then the channels whose chance is *not known yet* (too few
  reports: a cold start, a new channel, a channel without status callbacks), in the order of
  the product's priority map (``rank``: for an OTP, SMS before WhatsApp) because nothing learnt
  says which is cheap enough to bet the reader's wait on; then those whose learned
  90th-percentile time to deliver still fits in the code's remaining lifetime (the hard bound),
  the best chance of being in time first; then the rest, cheapest first. So a cheap channel
  that is slow (email) or whose failures are reported late is not an OTP's first choice,
  however cheap, nor is a cheap channel nobody has heard from yet.
- Everything else: cheapest per delivered message first: ``price / p``, the order that
  minimises the expected cost of trying channels until one delivers.

A small, bounded share of messages (``explore_share``, and at most one per channel per
``probe_after_seconds``) probes a *stale* channel (no result for ``probe_after_seconds``) that
is cheaper than the first choice by putting it first, so a channel abandoned after a failure is
tried again and wins its traffic back once it has recovered. CRITICAL messages are never
probes; OTP probes only go to channels in time for the reader.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

__all__ = ["IN_TIME_SHARE", "TTD_QUANTILE", "Choice", "Timing", "in_time", "order", "probed"]

#: The quantile of the time to deliver that must fit in the code's lifetime.
TTD_QUANTILE = 0.9
#: How often an OTP's first channel (or its fallback) must reach the reader within their patience.
IN_TIME_SHARE = 0.9


@attrs.frozen
class Timing:
    """What decides whether a channel is in time for an OTP (None: not known yet)."""

    #: Its delivery probability as the first channel (cautious: a lower bound).
    p: float
    #: The share of its deliveries within the reader's patience, and within half of it.
    within: float | None
    within_half: float | None
    #: The share of its reports that come within half the patience (when a fallback can start).
    reported_half: float | None
    #: Its delivery probability as a fallback (a point estimate; None: ``p``).
    p_fallback: float | None = None


def in_time(timings: Sequence[Timing]) -> list[float | None]:
    """For each channel tried first: the chance the reader has the code within their patience,
    from it, or from the best other channel started when its failure is reported within half the
    patience and delivering within the other half. None when its delays are not known yet."""
    half = [(t.p if t.p_fallback is None else t.p_fallback) * (1.0 if t.within_half is None else t.within_half)
            for t in timings]
    out: list[float | None] = []
    for i, t in enumerate(timings):
        if t.within is None:
            out.append(None)
            continue
        fallback = max((h for j, h in enumerate(half) if j != i), default=0.0)
        out.append(t.p * t.within + (1.0 - t.p) * (t.reported_half or 0.0) * fallback)
    return out


@attrs.frozen
class Choice:
    """One candidate channel as the strategy sees it for one message."""

    name: str
    #: A delivery probability (sampled from the posterior: Thompson sampling).
    p: float
    #: The expected price of one attempt.
    price: float
    #: The learned 90th-percentile time to deliver in seconds (None: not known yet).
    ttd: float | None
    #: OTPs: the chance the reader has the code in time when it goes first (:func:`in_time`).
    in_time: float | None = None
    #: Whether it has had no result for ``probe_after_seconds``.
    stale: bool = False
    #: Its place in the product's priority map for this message (lower first): the order of
    #: OTP channels whose in-time chance is not known yet.
    rank: int = 0

    @property
    def cost_per_delivery(self) -> float:
        return (self.price + 1e-9) / max(self.p, 1e-6)


#: The tiers of an OTP's route, best first.
IN_TIME, UNKNOWN, LIFETIME_ONLY, TOO_SLOW = range(4)


def _tier(c: Choice, patience: float | None, lifetime: float | None) -> int:
    """An OTP channel's tier (anything else is ``IN_TIME`` unless too slow for its lifetime):
    in time for the reader, not known yet, within the code's lifetime only, too slow for either."""
    if lifetime is not None and c.ttd is not None and c.ttd > lifetime:
        return TOO_SLOW
    if patience is None:
        return IN_TIME
    if c.in_time is None:
        return UNKNOWN
    return IN_TIME if c.in_time >= IN_TIME_SHARE else LIFETIME_ONLY


def order(choices: Sequence[Choice], *, critical: bool, patience: float | None,
          lifetime: float | None) -> list[Choice]:
    """``choices`` in route order. ``patience``/``lifetime`` (seconds) are set for OTPs only."""
    if critical:
        return sorted(choices, key=lambda c: (_tier(c, None, lifetime), -c.p))

    def key(c: Choice) -> tuple[int, float, float]:
        tier = _tier(c, patience, lifetime)
        if tier == UNKNOWN:
            return tier, c.rank, c.cost_per_delivery
        return tier, 0.0, c.cost_per_delivery if tier != LIFETIME_ONLY else -(c.in_time or 0.0)

    return sorted(choices, key=key)


def probed(route: list[Choice], rng: random.Random, share: float, *, patience: float | None,
           lifetime: float | None) -> Choice | None:
    """For ``share`` of calls, a stale channel worth probing ahead of ``route``'s first: one
    cheaper than the first (only such a channel can win traffic back on price; a dearer one
    matters only when the first fails, which its own results show) and, for an OTP, in time.
    The cheapest such; None for no probe."""
    if share <= 0 or len(route) < 2 or rng.random() >= share:
        return None
    first = route[0]
    eligible = [c for c in route[1:] if c.stale and c.price < first.price and _tier(c, patience, lifetime) == IN_TIME]
    return min(eligible, key=lambda c: c.price, default=None)
