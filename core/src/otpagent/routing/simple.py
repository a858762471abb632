"""``cheapest`` and ``most-reliable``: order reachable channels by one observable figure.

``cheapest`` sorts by the channel's cost estimate for this very message (segments, country);
``most-reliable`` by observed success share from shared storage, smoothed so an untried
channel is neither favoured nor ignored. Ties keep the priority map's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from otpagent.model import Envelope
from otpagent.protocols import ChannelInfo, PluginContext, RouteOutcome
from otpagent.routing.priority import kind_rank
from otpagent.settings import describes, setting, structure

__all__ = ["CheapestStrategy", "MostReliableStrategy", "StrategyOnlySection", "create_cheapest", "create_most_reliable"]


def reliability(info: ChannelInfo) -> float:
    """Delivered (or at least accepted) share with a Beta(1, 1) prior."""
    s = info.stats
    good = s.delivered if s.delivered + s.undelivered > 0 else s.accepted
    bad = s.attempts - s.accepted + s.undelivered
    return (good + 1) / (good + bad + 2)


class CheapestStrategy:
    observes_country = False

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        ranked = sorted(candidates, key=lambda c: (c.cost, kind_rank(envelope.priority, c.kind), -c.weight, c.name))
        return [c.name for c in ranked]

    def observe(self, outcome: RouteOutcome) -> None:
        """Costs are configured, not learned."""


class MostReliableStrategy:
    observes_country = False

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        ranked = sorted(candidates, key=lambda c: (-reliability(c), kind_rank(envelope.priority, c.kind), c.cost))
        return [c.name for c in ranked]

    def observe(self, outcome: RouteOutcome) -> None:
        """Reliability comes from the shared per-channel statistics."""


@attrs.frozen
class StrategyOnlySection:
    """``routing`` for a strategy without settings of its own: only ``strategy``."""

    strategy: str = setting()


@describes(StrategyOnlySection)
def create_cheapest(settings: Mapping[str, Any], context: PluginContext) -> CheapestStrategy:
    structure(StrategyOnlySection, settings, path="routing")
    return CheapestStrategy()


@describes(StrategyOnlySection)
def create_most_reliable(settings: Mapping[str, Any], context: PluginContext) -> MostReliableStrategy:
    structure(StrategyOnlySection, settings, path="routing")
    return MostReliableStrategy()
