"""The ``adaptive`` strategy: learned delivery probabilities, Thompson sampling, cost per delivery.

Each channel (and each channel in each destination country) keeps a Beta posterior over its
probability of delivering a message. Outcomes update it: an accepted send counts as a success
until a provider callback says ``undelivered``, which turns it into a failure. Old evidence
fades two ways: every new observation discounts the past by ``decay`` (a provider that starts
failing is noticed within a few dozen messages), and idle time pulls the posterior back toward
the uniform prior with ``half_life_seconds`` (a channel we stopped using gets explored again,
so a recovery is noticed too).

Planning samples one probability per channel from its posterior (Thompson sampling: exploration
in proportion to uncertainty) and orders channels:

- CRITICAL: highest sampled delivery probability first;
- otherwise by expected cost per delivered message, ``cost / p``, which is the order that
  minimises the expected cost of trying channels until one delivers; for OTPs, channels whose
  observed time to send would not fit in the code's remaining lifetime go last.

Posteriors live in shared storage (``routing:adaptive:*`` state keys), merged atomically with
``update_state`` every ``sync_interval_seconds``, so learning survives restarts and every worker
on every machine learns from every other.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from otpagent.errors import ConfigError
from otpagent.model import Envelope, MessageType, Priority, Status
from otpagent.protocols import Capability, ChannelInfo, PluginContext, RouteOutcome, SharedState
from otpagent.recipients import country_of
from otpagent.settings import describes, setting, structure
from otpagent.storage.capabilities import require

__all__ = ["AdaptiveSettings", "AdaptiveStrategy", "Posterior", "create_adaptive_strategy"]

PREFIX = "routing:adaptive:"


@attrs.frozen
class AdaptiveSettings:
    """``routing`` for the ``adaptive`` strategy (docs/routing.md): how fast it learns and forgets."""

    decay: float = setting(0.97, gt=0, le=1, reason="must be in (0, 1]")
    half_life_seconds: float = setting(900.0, ge=0)
    sync_interval_seconds: float = setting(1.0, ge=0)
    country_prior_strength: float = setting(4.0, ge=0)
    otp_latency_share: float = setting(0.5, ge=0)
    latency_smoothing: float = setting(0.2, ge=0)
    seed: int | None = None


@attrs.frozen
class Posterior:
    """Beta(a, b) over the delivery probability, plus a smoothed time-to-send in ms."""

    a: float = 1.0
    b: float = 1.0
    t: float = 0.0
    latency_ms: float | None = None

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def aged(self, now: float, half_life: float) -> Posterior:
        """Pull the evidence toward the Beta(1, 1) prior for the time since the last update."""
        if self.t <= 0 or now <= self.t or half_life <= 0:
            return self
        keep = 0.5 ** ((now - self.t) / half_life)
        return attrs.evolve(self, a=1 + (self.a - 1) * keep, b=1 + (self.b - 1) * keep, t=now)

    def merged(self, now: float, successes: float, failures: float, latencies: Sequence[float],
               s: AdaptiveSettings) -> Posterior:
        base = self.aged(now, s.half_life_seconds)
        keep = s.decay ** max(0.0, successes + failures)
        latency = base.latency_ms
        for sample in latencies:
            latency = sample if latency is None else latency + s.latency_smoothing * (sample - latency)
        return Posterior(a=max(1.0, 1 + (base.a - 1) * keep + successes),
                         b=max(1.0, 1 + (base.b - 1) * keep + failures), t=now, latency_ms=latency)

    def to_json(self) -> str:
        return json.dumps({"a": self.a, "b": self.b, "t": self.t, "latency_ms": self.latency_ms})

    @classmethod
    def from_json(cls, raw: str | None) -> Posterior:
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(a=float(d["a"]), b=float(d["b"]), t=float(d["t"]), latency_ms=d.get("latency_ms"))


@attrs.define
class _Pending:
    successes: float = 0.0
    failures: float = 0.0
    latencies: list[float] = attrs.Factory(list)


class AdaptiveStrategy:
    def __init__(self, storage: SharedState, settings: AdaptiveSettings | None = None, *,
                 clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self.storage = storage
        self.settings = settings or AdaptiveSettings()
        self.clock = clock
        self._rng = rng or random.Random(self.settings.seed)
        self._shared: dict[str, Posterior] = {}
        self._pending: dict[str, _Pending] = {}
        self._synced_at = float("-inf")
        self._lock = threading.Lock()

    # -- planning ------------------------------------------------------------------------------
    def posterior(self, channel: str, country: str | None = None) -> Posterior:
        """What this worker currently believes (shared evidence plus its own unsynced news)."""
        now = self.clock()
        self._maybe_sync(now)
        overall = self._local(PREFIX + channel, now)
        if country is None:
            return overall
        local = self._local(f"{PREFIX}{channel}@{country}", now)
        k = self.settings.country_prior_strength
        return attrs.evolve(local, a=local.a - 1 + k * overall.mean, b=local.b - 1 + k * (1 - overall.mean),
                            latency_ms=local.latency_ms if local.latency_ms is not None else overall.latency_ms)

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        now = self.clock()
        country = country_of(envelope.phone_number) if envelope.phone_number else None
        scored = []
        for c in candidates:
            belief = self.posterior(c.name, country)
            with self._lock:
                p = max(1e-6, self._rng.betavariate(belief.a, belief.b))
            scored.append((c, p, belief.latency_ms))
        if envelope.priority is Priority.CRITICAL:
            scored.sort(key=lambda x: -x[1])
        else:
            remaining = (envelope.expires_at - now) if envelope.message_type is MessageType.OTP \
                and envelope.expires_at is not None else None

            def too_slow(latency_ms: float | None) -> bool:
                return remaining is not None and latency_ms is not None and \
                    latency_ms / 1000.0 > remaining * self.settings.otp_latency_share

            scored.sort(key=lambda x: (too_slow(x[2]), (x[0].cost + 1e-9) / x[1]))
        return [c.name for c, _p, _lat in scored]

    # -- learning ------------------------------------------------------------------------------
    def observe(self, outcome: RouteOutcome) -> None:
        if outcome.callback:
            if outcome.status not in (Status.UNDELIVERED, Status.FAILED):
                return  # delivered/read confirm the success already counted at send time
            successes, failures = -1.0, 1.0
        elif outcome.status is Status.SENT:
            successes, failures = 1.0, 0.0
        else:
            successes, failures = 0.0, 1.0
        keys = [PREFIX + outcome.channel]
        if outcome.country:
            keys.append(f"{PREFIX}{outcome.channel}@{outcome.country}")
        with self._lock:
            for key in keys:
                pending = self._pending.setdefault(key, _Pending())
                pending.successes += successes
                pending.failures += failures
                if outcome.latency_ms is not None and not outcome.callback and outcome.status is Status.SENT:
                    pending.latencies.append(outcome.latency_ms)
        self._maybe_sync(self.clock())

    def _local(self, key: str, now: float) -> Posterior:
        with self._lock:
            shared = self._shared.get(key, Posterior())
            pending = self._pending.get(key)
            if pending is None:
                return shared.aged(now, self.settings.half_life_seconds)
            return shared.merged(now, pending.successes, pending.failures, pending.latencies, self.settings)

    def _maybe_sync(self, now: float) -> None:
        if now - self._synced_at < self.settings.sync_interval_seconds:
            return
        self.sync(now)

    def sync(self, now: float | None = None) -> None:
        """Merge this worker's observations into storage and read everyone else's."""
        now = self.clock() if now is None else now
        with self._lock:
            pending, self._pending = self._pending, {}
            self._synced_at = now
        for key, p in pending.items():
            def merge(raw: str | None, p: _Pending = p) -> str:
                return Posterior.from_json(raw).merged(now, p.successes, p.failures, p.latencies,
                                                       self.settings).to_json()

            self.storage.update_state(key, merge)
        shared = {k: Posterior.from_json(v) for k, v in self.storage.states_with_prefix(PREFIX).items()}
        with self._lock:
            self._shared = shared


@describes(AdaptiveSettings)
def create_adaptive_strategy(settings: Mapping[str, Any], context: PluginContext) -> AdaptiveStrategy:
    if context.storage is None:
        raise ConfigError("routing.strategy", "adaptive routing needs a storage backend")
    # ``strategy`` is the core's key; ``load_balance`` (priority's) is accepted and unused.
    own = {k: v for k, v in settings.items() if k not in ("strategy", "load_balance")}
    s = structure(AdaptiveSettings, own, path="routing")
    state = require(context.storage, Capability.SHARED_STATE, config_path="routing.strategy",
                    needed_by="adaptive routing (it shares what it learns through the store)")
    return AdaptiveStrategy(state, s, clock=context.clock)
