"""What ``adaptive`` knows of one channel (or one channel in one country): its evidence record.

- **Delivery**: fading counts of delivered (``wins``) and failed (``losses``) sends: a Beta
  posterior ``Beta(1 + wins, 1 + losses)``. Only a provider's report (or a send refused outright)
  is a result; an accepted send is *pending*. Every new result discounts all older ones by
  ``decay`` (so reaction is counted in messages, and grows faster with traffic), and idle time
  fades them with ``half_life_seconds`` (so an abandoned channel's bad record does not last).
- **Pending sends**: accepted sends still waiting for their report, counted per 2-second bucket
  of acceptance. One older than the channel's usual report delay (the 95th percentile of its
  learned report delays, ``d``) is evidence of a silent failure: it weighs as a failure, ramping
  from nothing at ``d`` to a full failure at ``1.5d``; at ``3d`` (at least a minute) it is written
  off as a failure (not something heard from the channel: ``seen`` and ``heard`` stay). Sooner,
  a channel gone silent is seen by the reports it owes (:meth:`Evidence._silence`).
  Both are scaled by the channel's *receipt share* (reports per judged send): a channel that
  never reports on its sends (no status callbacks) is not suspected, and its accepted sends
  count as deliveries straight away instead, as the best evidence there is.
- **Long memory** (``steady_*``): the same results with a slower discount, from reports only,
  for the OTP in-time test.
- **Delays**: the learned time to deliver (from delivered reports) and report delay (from every
  report) as :class:`DelayHistogram` s.
- **Price**: the estimated price of sends and the price providers billed (from reports that carry
  one), both smoothed; their ratio corrects the configured estimate, so a price change is seen.

Records are immutable; every change returns a new record. They are stored as JSON in the shared
state, so every worker reads and extends the same record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import attrs

from otpagent.routing.adaptive_delays import DelayHistogram

__all__ = ["BUCKET_SECONDS", "Evidence", "Learning"]

#: Width of a pending-send bucket: sends accepted within it age together.
BUCKET_SECONDS = 2.0
#: How fast the receipt share forgets (it must be slow: it says what *normal* looks like).
RECEIPT_HALF_LIFE_SECONDS = 3600.0
#: Pending buckets this old are dropped whatever else is known.
PENDING_MAX_AGE_SECONDS = 7200.0
#: A pending send is never written off younger than this (a channel that reports in a second
#: may still report a little later).
MIN_WRITE_OFF_SECONDS = 60.0
#: ... and pending buckets this old are dropped while the report delay is not known yet.
UNJUDGED_MAX_AGE_SECONDS = 600.0
#: Report delays needed before pending sends are judged by them.
MIN_DELAY_SAMPLES = 5.0
#: Owed reports (with none come) that show a channel has gone silent: ``exp(-3)`` < 5%.
SILENCE_EVIDENCE = 3.0
#: Smoothing of the price estimates (share of a new price in the average).
PRICE_SMOOTHING = 0.2
#: Discount per result of the steady (long-memory) delivery counts.
STEADY_DECAY = 0.99
#: Fading of old delay samples per new one.
DELAY_KEEP = 0.98
#: The chance that a channel has not changed since its last result halves with every this many
#: seconds without a result (see :meth:`Evidence._changed`).
CHANGE_HALF_LIFE_SECONDS = 30.0


@attrs.frozen
class Learning:
    """The knobs of the evidence record (from :class:`~otpagent.routing.adaptive.AdaptiveSettings`)."""

    decay: float = 0.93
    half_life_seconds: float = 1800.0

    @property
    def memory(self) -> float:
        """How many results the evidence effectively remembers (the most overdue sends can add)."""
        return 1.0 / (1.0 - self.decay) if self.decay < 1 else 100.0


def _fade(value: float, seconds: float, half_life: float) -> float:
    return value * 0.5 ** (seconds / half_life) if half_life > 0 and seconds > 0 else value


def _smooth(old: float | None, new: float) -> float:
    return new if old is None else old + PRICE_SMOOTHING * (new - old)


@attrs.frozen
class Evidence:
    wins: float = 0.0
    losses: float = 0.0
    #: The same results with a longer memory (``STEADY_DECAY`` per result, an hour's half-life
    #: in time): less noisy, for the OTP in-time test, which compares a probability with a
    #: threshold.
    steady_wins: float = 0.0
    steady_losses: float = 0.0
    t: float = 0.0
    seen: float = 0.0
    #: When the provider last reported on a send (the silence a recovery is weighed against).
    heard: float = 0.0
    ttd: DelayHistogram = attrs.field(factory=DelayHistogram)
    report: DelayHistogram = attrs.field(factory=DelayHistogram)
    #: Sends that got a final report, and sends written off without one (both fading slowly).
    receipts: float = 0.0
    unreported: float = 0.0
    estimated_cost: float | None = None
    billed_cost: float | None = None
    #: Sends per 2-second bucket of acceptance (for ordering reports by send), and of them the
    #: ones still waiting for a report.
    sends: Mapping[int, float] = attrs.field(factory=dict)
    pending: Mapping[int, float] = attrs.field(factory=dict)
    #: The latest acceptance time of a send whose report has come.
    frontier: float = 0.0

    # -- reading -------------------------------------------------------------------------------
    @property
    def receipt_share(self) -> float:
        """The share of judged sends (reported, or too old to expect a report) that got a report;
        0 before any is judged, so a new channel's accepted sends count as delivered until its
        first report shows it reports."""
        judged = self.receipts + self.unreported
        return self.receipts / judged if judged > 0 else 0.0

    @property
    def price_ratio(self) -> float:
        """Billed over estimated price (1.0 until both are known)."""
        if self.billed_cost is None or not self.estimated_cost:
            return 1.0
        return self.billed_cost / self.estimated_cost

    def report_delay(self) -> float | None:
        """The usual delay of this channel's reports (95th percentile), once there are enough."""
        return self.report.quantile(0.95) if self.report.weight >= MIN_DELAY_SAMPLES else None

    def beta(self, now: float, learning: Learning) -> tuple[float, float]:
        """The Beta posterior's parameters now, counting overdue pending sends as failures."""
        aged = self.aged(now, learning)
        overdue = min(learning.memory, aged._overdue(now))
        keep = learning.decay ** overdue
        return 1.0 + aged.wins * keep, 1.0 + aged.losses * keep + overdue

    def _overdue(self, now: float) -> float:
        """Pending sends that count as failures now: each one past the usual report delay (a
        ramp from ``d`` to ``1.5d``), or, when the channel has gone silent, the reports it owes
        (:meth:`_silence`), whichever is more; scaled by the receipt share."""
        d = self.report_delay()
        share = self.receipt_share
        if d is None or share <= 0:
            return 0.0
        total = 0.0
        for bucket, count in self.pending.items():
            age = now - (bucket + 0.5) * BUCKET_SECONDS
            total += count * min(1.0, max(0.0, 2.0 * (age - d) / d))
        return max(total, self._silence(now, share)) * share

    def _silence(self, now: float, share: float) -> float:
        """The reports owed by a channel that has gone silent, else 0.

        Every send accepted after the newest reported one (``frontier``) is still pending. Had the
        channel kept working, each of age ``a`` would have reported by now with chance ``F(a)``,
        the share of its learnt report delays within ``a``; so ``E = sum F(a)`` reports are owed
        and the chance that none came is about ``exp(-share * E)``. Once that is below 5%
        (``SILENCE_EVIDENCE`` owed reports) the owed reports count as failures: a provider that
        swallows sends is seen as soon as its usual reports fail to come, long before each send
        is individually overdue. One report on a newer send moves the frontier and ends it."""
        newest = int(self.frontier // BUCKET_SECONDS)
        owed = 0.0
        for bucket, count in self.pending.items():
            if bucket > newest:
                owed += count * (self.report.share_within(now - (bucket + 0.5) * BUCKET_SECONDS) or 0.0)
        return owed if owed * share >= SILENCE_EVIDENCE else 0.0

    # -- learning ------------------------------------------------------------------------------
    def aged(self, now: float, learning: Learning) -> Evidence:
        """Faded for the idle time since the last change."""
        if now <= self.t:
            return self
        dt = now - self.t if self.t > 0 else 0.0
        half_life = learning.half_life_seconds
        return attrs.evolve(self, t=now, wins=_fade(self.wins, dt, half_life),
                            losses=_fade(self.losses, dt, half_life),
                            steady_wins=_fade(self.steady_wins, dt, RECEIPT_HALF_LIFE_SECONDS),
                            steady_losses=_fade(self.steady_losses, dt, RECEIPT_HALF_LIFE_SECONDS),
                            receipts=_fade(self.receipts, dt, RECEIPT_HALF_LIFE_SECONDS),
                            unreported=_fade(self.unreported, dt, RECEIPT_HALF_LIFE_SECONDS))

    def _result(self, now: float, wins: float, losses: float, learning: Learning, *,
                steady: tuple[float, float] | None = None, heard: bool = True) -> Evidence:
        """Add results of total weight ``wins + losses``, discounting all older ones; the
        long-memory counts get ``steady`` (wins, losses; default the same). ``heard``: a
        send or report of the channel's own (``seen`` is now); not for a write-off, which only
        makes final what was already counted as overdue."""
        keep = learning.decay ** (wins + losses)
        steady_wins, steady_losses = (wins, losses) if steady is None else steady
        fade = STEADY_DECAY ** (steady_wins + steady_losses)
        return attrs.evolve(self, wins=self.wins * keep + wins, losses=self.losses * keep + losses,
                            seen=now if heard else self.seen,
                            steady_wins=self.steady_wins * fade + steady_wins,
                            steady_losses=self.steady_losses * fade + steady_losses)

    def _changed(self, now: float, delivered: bool, accepted_at: float, learning: Learning) -> Evidence:
        """Older results discounted by the chance that a channel believed bad has recovered.

        A little Bayesian change-point reasoning, for deliveries by a channel whose evidence
        says it mostly fails (counting its overdue sends): the chance of a change grows with the
        silence since the provider last reported (``heard``; ``CHANGE_HALF_LIFE_SECONDS``), and
        a delivery the old evidence found unlikely makes a change likelier still. So a probe
        that succeeds on an abandoned channel wipes most of its bad record at once, including
        the sends still pending from before it (made before the reported one: overdue, they
        would count as failures and be written off as failures about the old state). Failures
        need no such help: each discounts the past by
        ``decay``, and overdue sends count as they age.
        """
        a, b = self.beta(now, learning)  # with its overdue sends: a silent channel mostly fails too
        mean = a / (a + b)
        if not delivered or mean >= 0.5 or self.heard <= 0 or now <= self.heard:
            return self
        hazard = 1.0 - 0.5 ** ((now - self.heard) / CHANGE_HALF_LIFE_SECONDS)
        changed = hazard * 0.5 / (hazard * 0.5 + (1.0 - hazard) * mean)
        keep = 1.0 - changed
        before = int(accepted_at // BUCKET_SECONDS)
        pending = {b: n * keep if b < before else n for b, n in self.pending.items()}
        return attrs.evolve(self, wins=self.wins * keep, losses=self.losses * keep, pending=pending,
                            steady_wins=self.steady_wins * keep, steady_losses=self.steady_losses * keep)

    def _newer_sends(self, accepted_at: float) -> float:
        """How many sends were accepted after ``accepted_at`` up to the newest reported one."""
        first, last = int(accepted_at // BUCKET_SECONDS), int(self.frontier // BUCKET_SECONDS)
        return sum(n for b, n in self.sends.items() if first < b <= last)

    def sent(self, now: float, cost: float, learning: Learning) -> Evidence:
        """The provider accepted a send: pending, and a delivery already for a silent channel."""
        base = self.aged(now, learning)._written_off(now, learning)
        bucket = int(now // BUCKET_SECONDS)
        pending = {**base.pending, bucket: base.pending.get(bucket, 0.0) + 1.0}
        sends = {**base.sends, bucket: base.sends.get(bucket, 0.0) + 1.0}
        silent = 1.0 - base.receipt_share
        # Not in the steady counts: they decide whether an OTP reader's wait may be bet on the
        # channel, and an accepted send says nothing about reaching the reader in time.
        base = base._result(now, silent, 0.0, learning, steady=(0.0, 0.0)) if silent > 0 else base
        return attrs.evolve(base, pending=pending, sends=sends,
                            estimated_cost=_smooth(base.estimated_cost, cost) if cost > 0 else base.estimated_cost)

    def refused(self, now: float, learning: Learning) -> Evidence:
        """The send itself failed: a failure now."""
        return self.aged(now, learning)._written_off(now, learning)._result(now, 0.0, 1.0, learning)

    def reported(self, now: float, delivered: bool, accepted_at: float | None, ttd_seconds: float | None,
                 billed: float, learning: Learning) -> Evidence:
        """A provider's final report on a send: a result, a delay sample and maybe a price.

        Results count in the order their sends were made, not the order reports arrive: a late
        report about a send older than the newest reported one counts ``decay`` less per send
        made after it (stale evidence, when reports come minutes late or out of order); in the
        long-memory counts, by their own slower discount (``STEADY_DECAY``), as there a late
        report is as good as a prompt one."""
        base = self.aged(now, learning)._written_off(now, learning)
        newer = 0.0
        if accepted_at is not None:
            base = attrs.evolve(base._resolved(accepted_at), report=base.report.added(now - accepted_at, DELAY_KEEP))
            if accepted_at < base.frontier:
                newer = base._newer_sends(accepted_at)
            else:
                base = attrs.evolve(base._changed(now, delivered, accepted_at, learning), frontier=accepted_at)
        if ttd_seconds is not None:
            base = attrs.evolve(base, ttd=base.ttd.added(ttd_seconds, DELAY_KEEP))
        if billed > 0:
            base = attrs.evolve(base, billed_cost=_smooth(base.billed_cost, billed))
        base = attrs.evolve(base, receipts=base.receipts + 1.0, heard=now)
        weight, steady = learning.decay ** newer, STEADY_DECAY ** newer
        return base._result(now, weight if delivered else 0.0, 0.0 if delivered else weight, learning,
                            steady=(steady, 0.0) if delivered else (0.0, steady))

    def _resolved(self, accepted_at: float) -> Evidence:
        """Without the pending send accepted at ``accepted_at`` (its bucket or a neighbour)."""
        bucket = int(accepted_at // BUCKET_SECONDS)
        for b in (bucket, bucket - 1, bucket + 1):
            count = self.pending.get(b, 0.0)
            if count > 0:
                pending = dict(self.pending)
                if count > 1.0:
                    pending[b] = count - 1.0
                else:
                    del pending[b]
                return attrs.evolve(self, pending=pending)
        return self

    def _written_off(self, now: float, learning: Learning) -> Evidence:
        """Pending sends past ``3d`` (at least a minute) become failures (scaled by the receipt
        share); very old buckets are dropped."""
        if not self.sends:
            return self
        d = self.report_delay()
        judged = min(PENDING_MAX_AGE_SECONDS, max(3 * d, MIN_WRITE_OFF_SECONDS)) if d is not None else None
        limit = UNJUDGED_MAX_AGE_SECONDS if judged is None else judged
        oldest = int((now - limit) // BUCKET_SECONDS)
        if min(self.sends, default=oldest) >= oldest:
            return self
        dropped = sum(n for b, n in self.pending.items() if b < oldest)
        out = attrs.evolve(self, pending={b: n for b, n in self.pending.items() if b >= oldest},
                           sends={b: n for b, n in self.sends.items() if b >= oldest},
                           unreported=self.unreported + dropped)
        lost = min(learning.memory, dropped * self.receipt_share) if d is not None else 0.0
        if lost <= 0:
            return out
        # Not a new result (``seen``): nothing was heard from the channel, the sends already
        # counted as overdue are only made final. A write-off must not make an abandoned channel
        # look recently tried (it would not be probed) nor shorten the silence that a probe's
        # delivery weighs against its old record (:meth:`_changed`).
        return out._result(now, 0.0, lost, learning, heard=False)

    # -- storage -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "wins": self.wins, "losses": self.losses, "steady_wins": self.steady_wins,
            "steady_losses": self.steady_losses, "t": self.t, "seen": self.seen, "heard": self.heard,
            "ttd": self.ttd.to_list(),
            "report": self.report.to_list(), "receipts": self.receipts, "unreported": self.unreported,
            "estimated_cost": self.estimated_cost, "billed_cost": self.billed_cost,
            "sends": {str(k): v for k, v in self.sends.items()},
            "pending": {str(k): v for k, v in self.pending.items()}, "frontier": self.frontier,
        })

    @classmethod
    def from_json(cls, raw: str | None) -> Evidence:
        """The record in ``raw``; an empty record for nothing or for anything unreadable
        (e.g. the posterior format of earlier versions: that evidence is simply relearnt)."""
        if not raw:
            return cls()
        try:
            d = json.loads(raw)
            return cls(wins=_num(d["wins"]), losses=_num(d["losses"]), steady_wins=_num(d["steady_wins"]),
                       steady_losses=_num(d["steady_losses"]), t=_num(d["t"]), seen=_num(d["seen"]),
                       heard=_num(d.get("heard", 0.0)),
                       ttd=DelayHistogram.from_list(d.get("ttd")), report=DelayHistogram.from_list(d.get("report")),
                       receipts=_num(d["receipts"]), unreported=_num(d["unreported"]),
                       estimated_cost=_opt(d.get("estimated_cost")), billed_cost=_opt(d.get("billed_cost")),
                       sends=_buckets(d.get("sends")), pending=_buckets(d.get("pending")),
                       frontier=_num(d.get("frontier", 0.0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()


def _num(value: object) -> float:
    out = float(value)  # type: ignore[arg-type]
    if not math.isfinite(out):
        raise ValueError("not a finite number")
    return out


def _buckets(raw: object) -> dict[int, float]:
    return {int(k): _num(v) for k, v in dict(raw or {}).items()}  # type: ignore[call-overload]


def _opt(value: object) -> float | None:
    return None if value is None else _num(value)
