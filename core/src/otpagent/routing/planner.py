"""Turns a message into a route: which channels may carry it, in which order.

The planner filters (enabled, reaches the recipient, content fits, circuit not open, voice
OTPs only when allowed, the request's own channel list), the strategy orders, and the
request's ``preferred_channel`` has the last word on the first choice. The strategy is called
through a :class:`~otpagent.routing.guard.StrategyGuard`, so a broken one cannot wedge a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import attrs

from otpagent.circuit import CircuitBreakers
from otpagent.config import ChannelConfig
from otpagent.logs import get_logger
from otpagent.logthrottle import LogThrottle
from otpagent.model import ChannelKind, Envelope, Event, Message, MessageType
from otpagent.protocols import (
    Channel,
    ChannelInfo,
    ChannelStats,
    Housekeeping,
    RouteOutcome,
    RoutingStrategy,
    observes_country,
)
from otpagent.recipients import country_of
from otpagent.routing.guard import StrategyGuard
from otpagent.routing.refreshed import Refreshed

__all__ = ["Refusal", "RoutePlanner", "Unroutable"]

log = get_logger("otpagent.routing")

#: Kind names as the original product wrote them in ``preferred_channel``.
_KIND_ALIASES: Mapping[str, ChannelKind] = {**{k.value: k for k in ChannelKind}, "call": ChannelKind.VOICE}


@attrs.frozen
class Refusal:
    """Why a channel cannot carry a message, and the request field at fault (None: the
    channel's own state or the configuration)."""

    reason: str
    field: str | None = None


@attrs.frozen
class Unroutable:
    """No channel can carry the message; ``reasons`` says why for each channel."""

    reasons: Mapping[str, str]

    def __str__(self) -> str:
        return "no channel can deliver this message: " + "; ".join(f"{k}: {v}" for k, v in self.reasons.items())


class RoutePlanner:
    def __init__(
        self, *, channels: Mapping[str, Channel], configs: Mapping[str, ChannelConfig], strategy: RoutingStrategy,
        breakers: CircuitBreakers, storage: Housekeeping, voice_otp_enabled: bool,
        clock: Callable[[], float] = time.time, stats_ttl: float = 5.0,
        on_event: Callable[[Event], None] | None = None, strategy_label: str | None = None,
    ) -> None:
        self.channels = channels
        self.configs = configs
        self.strategy = strategy
        self._observes_country = observes_country(strategy)  # read once: it is optional
        #: ``strategy_label`` names the strategy's plugin in logs (e.g. "acme-routing 1.2.0").
        self.guard = StrategyGuard(strategy, label=strategy_label or type(strategy).__name__, clock=clock)
        self.breakers = breakers
        self.storage = storage
        self.voice_otp_enabled = voice_otp_enabled
        self.clock = clock
        self._announced_budget: set[tuple[str, str]] = set()
        self.on_event = on_event
        self._lock = threading.Lock()
        self._faults = LogThrottle(clock=clock)
        #: Each channel's recent performance and today's spend: read in the background (see
        #: :mod:`otpagent.routing.refreshed`), so no message waits for either aggregate.
        self.stats = Refreshed("route-stats", self._read_stats, ttl=stats_ttl, clock=clock, faults=self._faults)
        self.spend = Refreshed("route-spend", self._read_spend, ttl=stats_ttl, clock=clock, faults=self._faults)

    def channel_stats(self) -> Mapping[str, ChannelStats]:
        """Each channel's recent performance, read again every ``stats_ttl`` seconds (only the
        first read is waited for)."""
        return self.stats.get()

    def reasons_unusable(self, message: Message | None, envelope: Envelope, *, check_circuits: bool) -> dict[str, str]:
        """Why each configured channel cannot take this envelope (absent: it can)."""
        return {name: r.reason for name, r in self.refusals(message, envelope, check_circuits=check_circuits).items()}

    def any_usable(self, message: Message | None, envelope: Envelope, *, check_circuits: bool) -> bool:
        """Whether some configured channel can take this envelope: asks the channels in turn and
        stops at the first that can (intake asks this of every message it queues; the reasons of
        every channel are needed only when none can, see :meth:`refusals`)."""
        return any(refusal is None for _, refusal in self._each_refusal(message, envelope, check_circuits))

    def refusals(self, message: Message | None, envelope: Envelope, *, check_circuits: bool) -> dict[str, Refusal]:
        """Each configured channel that cannot take this envelope, why, and which request field
        that is about (``content`` when the channel's ``check`` refuses it)."""
        return {name: refusal for name, refusal in self._each_refusal(message, envelope, check_circuits)
                if refusal is not None}

    def _each_refusal(self, message: Message | None, envelope: Envelope,
                      check_circuits: bool) -> Iterator[tuple[str, Refusal | None]]:
        """Each configured channel in turn, with why it cannot take this envelope (None: it can)."""
        allowed = set(message.channels) if message is not None and message.channels else None
        for name, channel in self.channels.items():
            yield name, self._refusal(name, channel, envelope, allowed, check_circuits)

    def _refusal(self, name: str, channel: Channel, envelope: Envelope, allowed: set[str] | None,
                 check_circuits: bool) -> Refusal | None:
        cfg = self.configs[name]
        if allowed is not None and name not in allowed:
            return Refusal("not in the request's channel list", "channels")
        if not cfg.enabled:
            return Refusal("disabled")
        if envelope.message_type is MessageType.OTP and channel.kind == "voice" and not self.voice_otp_enabled:
            return Refusal("voice OTPs are off (otp.voice_enabled)")
        recipient = "email" if channel.kind == "email" else "phone_number"
        supported = self._ask(name, "supports", lambda: channel.supports(envelope))
        if isinstance(supported, Refusal):
            return supported
        if not supported:
            return Refusal(f"cannot reach this recipient ({channel.kind} needs "
                           f"{'an email address' if recipient == 'email' else 'a phone number'})", recipient)
        why = self._ask(name, "check", lambda: channel.check(envelope))
        if isinstance(why, Refusal):
            return why
        if why is not None:
            return Refusal(str(why), "content")  # ``check`` judges the content, by the protocol
        if check_circuits and (why := self.unavailable_reason(name)) is not None:
            return Refusal(why)
        return None

    def _ask(self, name: str, method: str, call: Callable[[], object]) -> object:
        """A channel's ``supports``/``check``, guarded: a plugin that raises makes the channel
        unusable for this message (logged once a minute), never breaks routing or intake."""
        try:
            return call()
        except Exception as exc:
            problem = f"channel {name} ({self.configs[name].plugin}) raised {type(exc).__name__} in {method}: {exc}"
            quiet = self._faults.allow((name, method))
            if quiet is not None:
                log.exception("channel_fault", channel=name, method=method, problem=problem,
                              repeats_since_last_log=quiet)
            return Refusal(problem)

    def plan(self, message: Message) -> list[str] | Unroutable:
        envelope = message.envelope()
        reasons = self.reasons_unusable(message, envelope, check_circuits=True)
        usable = [n for n in self.channels if n not in reasons]
        if not usable:
            return Unroutable(reasons)
        if message.channels:
            return [n for n in message.channels if n in usable]
        stats = self.channel_stats()
        infos = [
            ChannelInfo(
                name=n, kind=self.channels[n].kind, cost=self._cost(n, envelope),
                stats=stats.get(n, ChannelStats()), weight=self.configs[n].weight,
            )
            for n in usable
        ]
        route = self.guard.plan(envelope, infos)
        if message.preferred_channel:
            route = _prefer(route, message.preferred_channel, self.channels)
        return route or Unroutable({n: "the routing strategy chose no channel" for n in usable})

    def outcome_country(self, phone_number: str | None) -> str | None:
        """The country to report in a :class:`RouteOutcome`: found only for strategies that
        learn per country (``observes_country``, default True), since it costs a lookup per send."""
        if phone_number is None or not self._observes_country:
            return None
        return country_of(phone_number)

    def observe(self, outcome: RouteOutcome) -> None:
        """Let the strategy learn from an outcome; a strategy that raises is logged, never fatal."""
        self.guard.observe(outcome)

    def _cost(self, name: str, envelope: Envelope) -> float:
        try:
            return float(self.channels[name].estimate_cost(envelope))
        except Exception:
            return float(self.configs[name].cost or 0.0)

    def is_available(self, name: str) -> bool:
        return self.unavailable_reason(name) is None

    def next_channel(self, message: Message) -> int | None:
        """Index of the first usable channel after the current one in the message's route."""
        return next((i for i in range(message.route_index + 1, len(message.route))
                     if self.is_available(message.route[i])), None)

    def unavailable_reason(self, name: str) -> str | None:
        """Why the channel must be skipped right now (disabled, circuit open, budget spent)."""
        cfg = self.configs.get(name)
        now = self.clock()
        if cfg is None:
            return "not configured"
        if not cfg.enabled:
            return "disabled"
        if self.breakers.is_open(name, now):
            return "circuit open"
        if cfg.daily_budget is not None:
            spent = self.spent_today().get(name, 0.0)
            if spent >= cfg.daily_budget:
                self._announce_budget(name, spent, cfg.daily_budget, now)
                return f"daily budget of {cfg.daily_budget:g} spent"
        return None

    def spent_today(self) -> Mapping[str, float]:
        """Cost of today's (UTC) attempts per channel, read again every ``stats_ttl`` seconds."""
        return self.spend.get()

    def _read_stats(self, now: float) -> Mapping[str, ChannelStats]:
        return self.storage.stats(now).channels

    def _read_spend(self, now: float) -> Mapping[str, float]:
        midnight = now - (now % 86400.0)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        return {ch: days.get(day, 0.0) for ch, days in self.storage.costs_by_day(midnight).items()}

    def _announce_budget(self, name: str, spent: float, budget: float, now: float) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        with self._lock:
            if (name, day) in self._announced_budget:
                return
            self._announced_budget.add((name, day))
        if self.on_event is not None:
            self.on_event(Event(type="budget_exhausted", message_id=None, at=now,
                                data={"channel": name, "spent": round(spent, 6), "budget": budget}))


def _prefer(route: Sequence[str], preferred: str, channels: Mapping[str, Channel]) -> list[str]:
    wanted = preferred.strip()
    kind = _KIND_ALIASES.get(wanted.lower())
    first = [n for n in route if n == wanted] or [n for n in route if kind and channels[n].kind == kind][:1]
    return first + [n for n in route if n not in first]
