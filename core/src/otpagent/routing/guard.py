"""Guard rails around a routing strategy plugin: a broken strategy never wedges a message.

A strategy is third-party code called for every message. If its ``plan`` raises or returns
something that is not a route (None, a string, names that are not candidates, duplicates, an
empty route while candidates exist), the message is routed by the built-in ``priority`` order
instead; if its ``observe`` raises, the outcome is simply not learnt. Either way the fault is
logged at most once a minute per strategy and hook, naming the plugin and what was wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from otpagent.logs import get_logger
from otpagent.logthrottle import LogThrottle
from otpagent.model import Envelope
from otpagent.protocols import ChannelInfo, RouteOutcome, RoutingStrategy
from otpagent.routing.priority import PriorityStrategy

__all__ = ["StrategyGuard", "route_problem"]

log = get_logger("otpagent.routing")

#: How often one strategy's fault is logged (the repeats in between are counted).
LOG_INTERVAL_SECONDS = 60.0


class StrategyGuard:
    """Calls ``strategy`` and checks what comes back; ``label`` names its plugin in the log."""

    def __init__(self, strategy: RoutingStrategy, *, label: str, clock: Callable[[], float] = time.time,
                 fallback: RoutingStrategy | None = None) -> None:
        self.strategy = strategy
        self.label = label
        self.fallback = fallback or PriorityStrategy()
        self._throttle = LogThrottle(LOG_INTERVAL_SECONDS, clock)

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        """The strategy's route, or the ``priority`` order when the strategy fails."""
        try:
            route: Any = self.strategy.plan(envelope, candidates)
        except Exception as exc:
            self._report("plan", f"plan raised {type(exc).__name__}: {exc}", exc)
        else:
            problem = route_problem(route, [c.name for c in candidates])
            if problem is None:
                return list(route)
            self._report("plan", problem, None)
        return self.fallback.plan(envelope, candidates)

    def observe(self, outcome: RouteOutcome) -> None:
        """Feed the outcome to the strategy; a strategy that raises never breaks the caller."""
        try:
            self.strategy.observe(outcome)
        except Exception as exc:
            self._report("observe", f"observe raised {type(exc).__name__}: {exc}", exc)

    def _report(self, hook: str, problem: str, exc: BaseException | None) -> None:
        quiet = self._throttle.allow(hook)
        if quiet is None:
            return
        fallback = "; the message is routed by the built-in priority order" if hook == "plan" else ""
        log.error("strategy_failed", plugin=self.label, hook=hook, problem=problem + fallback,
                  repeats_since_last_log=quiet, exc_info=exc)


def route_problem(route: Any, candidates: Sequence[str]) -> str | None:
    """What is wrong with ``route`` as a plan over ``candidates`` (None: nothing)."""
    if type(route) is list or type(route) is tuple:  # the usual case, checked in a few C calls
        try:
            names = set(route)
        except TypeError:  # unhashable items: the slow path says what they are
            names = set()
        if len(names) == len(route) and names.issubset(candidates) and (route or not candidates):
            return None
    if route is None or isinstance(route, str | bytes) or not isinstance(route, Sequence):
        return f"plan returned {_kind(route)} instead of a list of channel names"
    wrong_types = sorted({type(n).__name__ for n in route if not isinstance(n, str)})
    if wrong_types:
        return f"plan returned a list holding {', '.join(wrong_types)} values instead of channel names"
    unknown = [n for n in route if n not in candidates]
    if unknown:
        return (f"plan returned names that are not candidates: {', '.join(map(repr, unknown))} "
                f"(candidates: {', '.join(candidates)})")
    if len(set(route)) != len(route):
        twice = sorted({n for n in route if route.count(n) > 1})
        return f"plan named {', '.join(map(repr, twice))} more than once"
    if not route and candidates:
        return f"plan returned an empty route although {len(candidates)} channel(s) can take the message"
    return None


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"
