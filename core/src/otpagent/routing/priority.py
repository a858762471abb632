"""The ``priority`` strategy: the product's fixed map from priority to first channel kind.

CRITICAL -> voice (most reliable), HIGH -> SMS (fast), MEDIUM -> WhatsApp (cheap), LOW -> email
(cheapest); every other reachable channel follows as a fallback. Within one kind, channels
are ordered by weight (highest first), then cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from otpagent.model import Envelope, Priority
from otpagent.protocols import ChannelInfo, PluginContext, RouteOutcome

__all__ = ["KIND_ORDER", "PriorityStrategy", "create_priority_strategy"]

KIND_ORDER: Mapping[Priority, tuple[str, ...]] = {
    Priority.CRITICAL: ("voice", "sms", "whatsapp", "email"),
    Priority.HIGH: ("sms", "whatsapp", "voice", "email"),
    Priority.MEDIUM: ("whatsapp", "sms", "email", "voice"),
    Priority.LOW: ("email", "whatsapp", "sms", "voice"),
}


class PriorityStrategy:
    """Orders candidates by the kind map for the message's priority."""

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        order = KIND_ORDER[envelope.priority]

        def rank(c: ChannelInfo) -> tuple[int, float, float, str]:
            kind_rank = order.index(c.kind) if c.kind in order else len(order)
            return kind_rank, -c.weight, c.cost, c.name

        return [c.name for c in sorted(candidates, key=rank)]

    def observe(self, outcome: RouteOutcome) -> None:
        """The fixed map learns nothing."""


def create_priority_strategy(settings: Mapping[str, Any], context: PluginContext) -> PriorityStrategy:
    return PriorityStrategy()
