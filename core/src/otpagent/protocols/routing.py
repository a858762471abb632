"""The routing-strategy protocol and what a strategy sees and learns from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from otpagent.model import Envelope, Priority, Status

__all__ = ["ChannelInfo", "ChannelStats", "RouteOutcome", "RoutingStrategy", "observes_country"]


@attrs.frozen(kw_only=True)
class ChannelStats:
    """Observed performance of one channel (from storage, shared by every worker)."""

    attempts: int = 0
    accepted: int = 0
    transient: int = 0
    permanent: int = 0
    delivered: int = 0
    undelivered: int = 0
    cost: float = 0.0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        """Accepted share of attempts, or None before the first attempt."""
        return self.accepted / self.attempts if self.attempts else None


@attrs.frozen(kw_only=True)
class ChannelInfo:
    """What a routing strategy knows of a candidate channel for one message."""

    name: str
    kind: str
    cost: float
    stats: ChannelStats
    weight: float = 1.0


@attrs.frozen(kw_only=True)
class RouteOutcome:
    """What happened on one channel for one message: fed back to the strategy's ``observe``."""

    message_id: str
    channel: str
    priority: Priority
    status: Status
    country: str | None = None
    #: For a send: how long the provider's send API took to answer (not the time to reach the person).
    latency_ms: float | None = None
    #: For a send: the attempt's estimated cost. For a callback: the price the provider billed,
    #: when its report carries one (Twilio's ``Price``), else 0.0 (unknown).
    cost: float = 0.0
    #: True when the outcome comes from a provider callback (delivered/undelivered) rather
    #: than from the send itself; a callback failure overturns an earlier accepted send.
    callback: bool = False
    #: For a delivered/read callback: milliseconds from the provider accepting the send to the
    #: recipient's device receiving it, from the provider's own timestamp when the report has
    #: one, else from the report's arrival. None otherwise.
    time_to_deliver_ms: float | None = None
    #: For a callback: when the provider accepted the attempt it reports on (POSIX seconds, our
    #: clock), so a strategy can match a late report to its send. None otherwise.
    accepted_at: float | None = None


@runtime_checkable
class RoutingStrategy(Protocol):
    """Chooses the channels for a message: first choice, then fallbacks in order.

    Optional member (read once, when the agent is built, by :func:`observes_country`):

    ``observes_country: bool`` (default True)
        Set it to False when ``observe`` ignores ``RouteOutcome.country``: finding a number's
        country costs about as much as parsing it, once per send, so the core then leaves it
        None.
    """

    def plan(self, envelope: Envelope, candidates: Sequence[ChannelInfo]) -> list[str]:
        """Order (a subset of) ``candidates`` by name; every candidate can reach the recipient."""

    def observe(self, outcome: RouteOutcome) -> None:
        """Learn from an outcome (attempt results and provider callbacks)."""


def observes_country(strategy: RoutingStrategy) -> bool:
    """The strategy's optional ``observes_country`` member, or its default (True).

    The one place the member is read; callers read it once at build time, not per send.
    """
    return getattr(strategy, "observes_country", True) is not False
