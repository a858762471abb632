"""The ``priority`` strategy: the product's fixed map from priority to first channel kind.

CRITICAL -> voice (most reliable), HIGH -> SMS (fast), MEDIUM -> WhatsApp (cheap), LOW -> email
(cheapest); every other reachable channel follows as a fallback. Several channels of one kind
are load-balanced: each message draws their order at random, weighted by configured ``weight``
times observed health, so a struggling provider gets less traffic without being dropped.
``{"load_balance": false}`` orders them by weight, then cost, instead.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from otpagent.model import ChannelKind, Envelope, Priority
from otpagent.protocols import ChannelInfo, PluginContext, RouteOutcome
from otpagent.settings import describes, setting, structure

__all__ = ["KIND_ORDER", "PrioritySection", "PriorityStrategy", "create_priority_strategy", "health"]

_V, _S, _W, _E = ChannelKind.VOICE, ChannelKind.SMS, ChannelKind.WHATSAPP, ChannelKind.EMAIL
#: The original product's map: CRITICAL -> voice (most reliable), HIGH -> SMS (fast),
#: MEDIUM -> WhatsApp (cheap), LOW -> email (cheapest); then the rest, in a sensible order.
KIND_ORDER: Mapping[Priority, tuple[ChannelKind, ...]] = {
    Priority.CRITICAL: (_V, _S, _W, _E),
    Priority.HIGH: (_S, _W, _V, _E),
    Priority.MEDIUM: (_W, _S, _E, _V),
    Priority.LOW: (_E, _W, _S, _V),
}


def health(info: ChannelInfo, floor: float = 0.05) -> float:
    """Observed success share, smoothed (Laplace) so a new channel starts healthy."""
    s = info.stats
    return max(floor, (s.accepted + 1) / (s.attempts + 1)) if s.attempts else 1.0


def kind_rank(priority: Priority, kind: str) -> int:
    order = KIND_ORDER[priority]
    return order.index(kind) if kind in order else len(order)


class PriorityStrategy:
    """Orders candidates by the kind map for the message's priority."""

    observes_country = False

    def __init__(self, *, load_balance: bool = True, rng: random.Random | None = None) -> None:
        self.load_balance = load_balance
        self._rng = rng or random.Random()

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        groups: dict[int, list[ChannelInfo]] = {}
        for c in candidates:
            groups.setdefault(kind_rank(envelope.priority, c.kind), []).append(c)
        route: list[str] = []
        for rank in sorted(groups):
            group = sorted(groups[rank], key=lambda c: (-c.weight, c.cost, c.name))
            route.extend(c.name for c in (self._weighted_order(group) if self.load_balance else group))
        return route

    def _weighted_order(self, group: list[ChannelInfo]) -> list[ChannelInfo]:
        """Weighted sampling without replacement (Efraimidis-Spirakis keys)."""
        if len(group) < 2:
            return group
        keyed = [(self._rng.random() ** (1.0 / (c.weight * health(c))), c) for c in group]
        return [c for _key, c in sorted(keyed, key=lambda kc: -kc[0])]

    def observe(self, outcome: RouteOutcome) -> None:
        """The fixed map learns nothing itself; health comes from shared channel stats."""


@attrs.frozen
class PrioritySection:
    """``routing`` for the ``priority`` strategy."""

    strategy: str = setting("priority")
    load_balance: bool = setting(True, doc="Weighted random order among channels of one kind "
                                           "(false: by weight, then cost)")


@describes(PrioritySection)
def create_priority_strategy(settings: Mapping[str, Any], context: PluginContext) -> PriorityStrategy:
    return PriorityStrategy(load_balance=structure(PrioritySection, settings, path="routing").load_balance)
