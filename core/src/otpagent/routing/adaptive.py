"""The ``adaptive`` strategy: learned delivery, time to deliver and price; Thompson sampling.

Per channel, and per channel in each destination country, an evidence record
(:mod:`~otpagent.routing.adaptive_evidence`) holds a Beta posterior over the delivery
probability built from provider reports (an accepted send is *pending* until its report, and
ages toward a failure once it is overdue), the learned time to deliver, the usual report delay
and the billed price. Planning samples a probability per channel (Thompson sampling) and orders
the channels (:mod:`~otpagent.routing.adaptive_ordering`): reliability first for CRITICAL, the
reader's patience then price per delivery for OTPs, price per delivery for the rest, with a
small share of probes to channels nobody has tried lately.

Records live in shared storage (``routing:adaptive:*`` state keys), merged atomically with
``update_state`` every ``sync_interval_seconds``, so learning survives restarts and every worker
on every machine learns from every other.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from otpagent.errors import ConfigError
from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import Capability, ChannelInfo, PluginContext, RouteOutcome, SharedState
from otpagent.recipients import country_of
from otpagent.routing.adaptive_delays import DelayHistogram
from otpagent.routing.adaptive_evidence import MIN_DELAY_SAMPLES, Evidence, Learning
from otpagent.routing.adaptive_ordering import TTD_QUANTILE, Choice, Timing, in_time, order, probed
from otpagent.routing.priority import kind_rank
from otpagent.settings import describes, setting, structure
from otpagent.storage.capabilities import require

__all__ = ["AdaptiveSettings", "AdaptiveStrategy", "Belief", "create_adaptive_strategy"]

PREFIX = "routing:adaptive:"
#: Channel kinds assumed too slow for an OTP reader until their delays are learnt (email often
#: takes tens of seconds to minutes; every other kind is assumed in time until shown otherwise).
SLOW_UNTIL_LEARNT = frozenset({"email"})
#: z of the 90% one-sided bound.
Z90 = 1.2816
#: Country evidence needs this many delay samples before its own time to deliver is used.
MIN_COUNTRY_DELAY_SAMPLES = 5.0
#: How many delivered message ids are remembered so a read receipt after a delivery is not
#: counted twice.
_RECENT_DELIVERIES = 4096

Change = Callable[[Evidence], Evidence]


@attrs.frozen
class AdaptiveSettings:
    """``routing`` for the ``adaptive`` strategy (docs/routing.md): how fast it learns and forgets,
    and how long an OTP reader waits."""

    decay: float = setting(0.93, gt=0, le=1, reason="must be in (0, 1]",
                           doc="Weight each older result keeps when a newer one arrives")
    half_life_seconds: float = setting(1800.0, gt=0, doc="Evidence halves in weight after this long")
    sync_interval_seconds: float = setting(1.0, ge=0, doc="How often a worker shares what it learnt")
    country_prior_strength: float = setting(4.0, ge=0)
    otp_deliver_within_seconds: float = setting(30.0, gt=0, doc="The OTP reader's patience: time to deliver "
                                                                "an OTP should stay within it")
    explore_share: float = setting(0.05, ge=0, le=0.5, doc="Share of messages that probe channels not chosen")
    probe_after_seconds: float = setting(15.0, ge=0)
    seed: int | None = setting(None)

    @property
    def learning(self) -> Learning:
        return Learning(decay=self.decay, half_life_seconds=self.half_life_seconds)


@attrs.frozen
class Belief:
    """What the strategy believes of one channel for one destination."""

    a: float
    b: float
    #: The long-memory counts (successes, failures; no prior): see :meth:`timing`.
    steady: tuple[float, float]
    ttd: DelayHistogram
    report: DelayHistogram
    price_ratio: float
    seen: float

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    @property
    def ttd_seconds(self) -> float | None:
        """The 90th percentile of the time to deliver."""
        return self.ttd.quantile(TTD_QUANTILE)

    def timing(self, patience: float) -> Timing:
        """For the OTP in-time test, which compares a probability with a threshold: a cautious
        delivery probability, the 90% lower bound from the long-memory counts (the current
        estimate is too noisy: a channel near the threshold would flip every few messages), with
        a light prior (half a success and half a failure). A channel failing right now is still
        last among those in time by its price per delivery, which uses the current estimate."""
        wins, losses = self.steady
        n = wins + losses + 1.0
        mean = (wins + 0.5) / n
        bound = mean - Z90 * math.sqrt(mean * (1.0 - mean) / n)
        known = self.ttd.weight >= MIN_DELAY_SAMPLES and self.report.weight >= MIN_DELAY_SAMPLES
        return Timing(p=max(0.0, bound), p_fallback=mean,
                      within=self.ttd.share_within(patience) if known else None,
                      within_half=self.ttd.share_within(patience / 2),
                      reported_half=self.report.share_within(patience / 2))


class AdaptiveStrategy:
    def __init__(self, storage: SharedState, settings: AdaptiveSettings | None = None, *,
                 clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self.storage = storage
        self.settings = settings or AdaptiveSettings()
        self.clock = clock
        self._learning = self.settings.learning
        self._rng = rng or random.Random(self.settings.seed)
        self._shared: dict[str, Evidence] = {}
        self._changes: dict[str, list[Change]] = {}
        self._view: dict[str, Evidence] = {}
        self._delivered: dict[str, None] = {}
        self._probed_at: dict[str, float] = {}
        self._synced_at = float("-inf")
        self._lock = threading.Lock()

    # -- planning ------------------------------------------------------------------------------
    def belief(self, channel: str, country: str | None = None) -> Belief:
        """What this worker believes now (shared evidence plus its own unsynced news)."""
        now = self.clock()
        self._maybe_sync(now)
        overall = self._evidence(PREFIX + channel).aged(now, self._learning)
        a, b = overall.beta(now, self._learning)
        steady = (overall.steady_wins, overall.steady_losses)
        if country is None:
            return Belief(a, b, steady, overall.ttd, overall.report, overall.price_ratio, overall.seen)
        local = self._evidence(f"{PREFIX}{channel}@{country}").aged(now, self._learning)
        la, lb = local.beta(now, self._learning)
        k = self.settings.country_prior_strength
        mean = a / (a + b)
        steady_mean = (steady[0] + 1.0) / (sum(steady) + 2.0)
        local_steady = (local.steady_wins + k * steady_mean, local.steady_losses + k * (1.0 - steady_mean))
        ttd = local.ttd if local.ttd.weight >= MIN_COUNTRY_DELAY_SAMPLES else overall.ttd
        report = local.report if local.report.weight >= MIN_COUNTRY_DELAY_SAMPLES else overall.report
        ratio = local.price_ratio if local.billed_cost is not None else overall.price_ratio
        return Belief(la - 1 + k * mean, lb - 1 + k * (1 - mean), local_steady, ttd, report, ratio, local.seen)

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        now = self.clock()
        country = country_of(envelope.phone_number) if envelope.phone_number else None
        s = self.settings
        otp = envelope.message_type is MessageType.OTP
        lifetime = envelope.expires_at - now if otp and envelope.expires_at is not None else None
        patience = s.otp_deliver_within_seconds if otp else None
        beliefs = [self.belief(c.name, country) for c in candidates]
        timely = in_time([b.timing(patience) for b in beliefs]) if patience is not None else [None] * len(beliefs)
        choices = []
        for c, belief, learnt in zip(candidates, beliefs, timely, strict=True):
            unknown_but_slow = learnt is None and patience is not None and c.kind in SLOW_UNTIL_LEARNT
            chance = 0.0 if unknown_but_slow else learnt
            with self._lock:
                p = self._rng.betavariate(belief.a, belief.b)
            choices.append(Choice(name=c.name, p=p, price=c.cost * belief.price_ratio, ttd=belief.ttd_seconds,
                                  in_time=chance, stale=now - belief.seen >= s.probe_after_seconds,
                                  rank=kind_rank(envelope.priority, c.kind)))
        critical = envelope.priority is Priority.CRITICAL
        route = order(choices, critical=critical, patience=patience, lifetime=lifetime)
        probe = None if critical else self._probe(route, now, patience, lifetime)
        if probe is not None:
            route = [probe, *(c for c in route if c is not probe)]
        return [c.name for c in route]

    def _probe(self, route: list[Choice], now: float, patience: float | None,
               lifetime: float | None) -> Choice | None:
        """A channel to probe with this message (at most one per channel per
        ``probe_after_seconds`` from this worker), or None."""
        wait = self.settings.probe_after_seconds
        with self._lock:
            ready = [c if now - self._probed_at.get(c.name, float("-inf")) >= wait else attrs.evolve(c, stale=False)
                     for c in route]
            probe = probed(ready, self._rng, self.settings.explore_share, patience=patience, lifetime=lifetime)
            if probe is not None:
                self._probed_at[probe.name] = now
        return probe

    # -- learning ------------------------------------------------------------------------------
    def observe(self, outcome: RouteOutcome) -> None:
        now = self.clock()
        change = self._change(outcome, now)
        if change is None:
            return
        keys = [PREFIX + outcome.channel]
        if outcome.country:
            keys.append(f"{PREFIX}{outcome.channel}@{outcome.country}")
        with self._lock:
            for key in keys:
                self._changes.setdefault(key, []).append(change)
                self._view[key] = change(self._view.get(key) or self._shared.get(key) or Evidence())
        self._maybe_sync(now)

    def _change(self, outcome: RouteOutcome, now: float) -> Change | None:
        """What ``outcome`` does to an evidence record (None: nothing)."""
        learning = self._learning
        if not outcome.callback:
            if outcome.status is Status.SENT:
                return lambda e: e.sent(now, outcome.cost, learning)
            return lambda e: e.refused(now, learning)
        if outcome.status in (Status.DELIVERED, Status.READ):
            if self._seen_delivered(outcome.message_id, outcome.channel):
                return None  # a read receipt after the delivery report: nothing new
            delivered = True
        elif outcome.status in (Status.UNDELIVERED, Status.FAILED):
            delivered = False
        else:
            return None  # progress (sent, sending): not a result
        ttd = outcome.time_to_deliver_ms / 1000.0 if outcome.time_to_deliver_ms is not None else None
        return lambda e: e.reported(now, delivered, outcome.accepted_at, ttd, outcome.cost, learning)

    def _seen_delivered(self, message_id: str, channel: str) -> bool:
        key = f"{message_id}\x00{channel}"
        with self._lock:
            if key in self._delivered:
                return True
            self._delivered[key] = None
            if len(self._delivered) > _RECENT_DELIVERIES:
                del self._delivered[next(iter(self._delivered))]
        return False

    def _evidence(self, key: str) -> Evidence:
        with self._lock:
            return self._view.get(key) or self._shared.get(key) or Evidence()

    def _maybe_sync(self, now: float) -> None:
        if now - self._synced_at < self.settings.sync_interval_seconds:
            return
        self.sync(now)

    def sync(self, now: float | None = None) -> None:
        """Merge this worker's observations into storage and read everyone else's."""
        now = self.clock() if now is None else now
        with self._lock:
            changes, self._changes = self._changes, {}
            self._synced_at = now
        for key, todo in changes.items():
            def merge(raw: str | None, todo: list[Change] = todo) -> str:
                evidence = Evidence.from_json(raw)
                for change in todo:
                    evidence = change(evidence)
                return evidence.to_json()

            self.storage.update_state(key, merge)
        shared = {k: Evidence.from_json(v) for k, v in self.storage.states_with_prefix(PREFIX).items()}
        with self._lock:
            self._shared = shared
            self._view = {}


_REPLACED = {"otp_latency_share": "otp_deliver_within_seconds (the reader's patience, in seconds, measured "
                                  "from the provider's delivery reports)",
             "latency_smoothing": "nothing: time to deliver is now learnt as a distribution"}


@describes(AdaptiveSettings)
def create_adaptive_strategy(settings: Mapping[str, Any], context: PluginContext) -> AdaptiveStrategy:
    if context.storage is None:
        raise ConfigError("routing.strategy", "adaptive routing needs a storage backend")
    for key, replacement in _REPLACED.items():
        if key in settings:
            raise ConfigError(f"routing.{key}", f"no longer used by adaptive routing; replaced by {replacement}")
    # ``strategy`` is the core's key; ``load_balance`` (priority's) is accepted and unused.
    own = {k: v for k, v in settings.items() if k not in ("strategy", "load_balance")}
    adaptive = structure(AdaptiveSettings, own, path="routing")
    state = require(context.storage, Capability.SHARED_STATE, config_path="routing.strategy",
                    needed_by="adaptive routing (it shares what it learns through the store)")
    return AdaptiveStrategy(state, adaptive, clock=context.clock)
