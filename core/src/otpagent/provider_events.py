"""A provider's status report, from callback to one atomic write and its live side effects.

``IntelligentOTPAgent.record_provider_event`` lands here. The decision (which delivery statuses
the report may move the attempt from, and what becomes of the message: delivered, or on to its
next channel) is made from a read of the attempt and the message; the storage backend then
applies it in ONE transaction together with remembering the event id, conditioned so that only
the message's current attempt moves it. Only then are events published, the dispatcher woken
and the routing strategy told.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from otpagent.errors import ConfigError
from otpagent.logs import get_logger
from otpagent.model import PROGRESS_RANK, Attempt, Event, Message, Status
from otpagent.onward import route_onward
from otpagent.protocols import (
    Capability,
    MessageUpdate,
    ProviderEvent,
    ProviderEventOutcome,
    ProviderEventResult,
    RouteOutcome,
)
from otpagent.storage.capabilities import describe

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent
    from otpagent.routing.planner import RoutePlanner

__all__ = ["allowed_from", "message_change", "record_provider_event", "time_to_deliver_ms"]

log = get_logger("otpagent.callbacks")

_FAILURES = (Status.UNDELIVERED, Status.FAILED)


def allowed_from(status: Status) -> frozenset[Status | None]:
    """The attempt delivery statuses a report of ``status`` may move on from: every status
    ranked below it (and none yet). Nothing for a status providers do not report.
    """
    rank = PROGRESS_RANK.get(status)
    if rank is None:
        return frozenset()
    return frozenset({None, *(s for s, r in PROGRESS_RANK.items() if r < rank)})


def message_change(planner: RoutePlanner, message: Message, attempt: Attempt, event: ProviderEvent,
                   now: float) -> tuple[MessageUpdate, list[Event], str | None] | None:
    """What the report does to the message, if it is about the message's current attempt:
    forward to the reported status, or on undelivered/failed, on to the route's next usable
    channel or the end (the one rule of :mod:`otpagent.onward`). The third item names the
    counter to bump when the change applies (None for progress).
    """
    rank = PROGRESS_RANK.get(event.status)
    if rank is None or message.provider_message_id != event.provider_message_id:
        return None
    data: dict[str, object] = {"channel": attempt.channel, "provider_message_id": event.provider_message_id,
                               "error_code": event.error_code}
    if event.occurred_at is not None:
        data["occurred_at"] = event.occurred_at
    reported = Event(type=event.status.value, message_id=message.id, at=now, data=data)
    template = MessageUpdate(message_id=message.id, status=event.status,
                             expected_statuses=frozenset(s for s in (Status.SENT, Status.DELIVERED)
                                                         if PROGRESS_RANK[s] < rank),
                             expected_provider_message_id=event.provider_message_id)
    if event.status not in _FAILURES:
        return attrs.evolve(template, clear_secret=event.status in (Status.DELIVERED, Status.READ)), [reported], None
    error = f"{attempt.channel}: {event.status.value}" + (f" [{event.error_code}]" if event.error_code else "") + \
            (f" {event.error_message}" if event.error_message else "")
    step = route_onward(planner, message, error, now, template=template, end_status=event.status, end_events=())
    return step.update, [reported, *step.events], step.counter


def record_provider_event(agent: IntelligentOTPAgent, event: ProviderEvent) -> ProviderEventResult:
    """Decide, apply atomically (see ``ProviderEvents.apply_provider_event``), then publish."""
    store = agent.capabilities.provider_events
    if store is None:
        raise ConfigError("server.public_url", f"the storage backend {agent.storage.name!r} does not provide "
                                               f"{describe(Capability.PROVIDER_EVENTS)}, which provider status "
                                               "callbacks need")
    attempt = agent.storage.find_by_provider_id(event.provider_message_id)
    if attempt is None:
        return ProviderEventResult(outcome=ProviderEventOutcome.UNKNOWN)
    now = agent.clock()
    message = agent.storage.get_message(attempt.message_id)
    change = message_change(agent.planner, message, attempt, event, now) if message is not None else None
    update, events, counter = change if change is not None else (None, [], None)
    result = store.apply_provider_event(event, allowed_from=allowed_from(event.status), update=update,
                                        events=events, now=now)
    if result.message_updated and message is not None:
        if counter is not None:
            agent.dispatcher.count(counter)  # counted as the dispatcher counts its own fallbacks
        _announce(agent, message, attempt, event, events, now)
    return result


def time_to_deliver_ms(attempt: Attempt, event: ProviderEvent, now: float) -> float | None:
    """For a delivered/read report: from the provider accepting the send (the end of our send
    call) to the device receiving it, by the provider's timestamp when it gives one, else by the
    report's arrival (an upper bound: the report's own trip is included). Never negative."""
    if event.status not in (Status.DELIVERED, Status.READ):
        return None
    received = event.occurred_at if event.occurred_at is not None else now
    return max(0.0, received - attempt.finished_at) * 1000.0


def _announce(agent: IntelligentOTPAgent, message: Message, attempt: Attempt, event: ProviderEvent,
              events: Sequence[Event], now: float) -> None:
    agent.bus.publish(events)
    agent.notify_workers()
    agent.planner.observe(RouteOutcome(  # guarded: a strategy that raises is logged, never fatal
        message_id=message.id, channel=attempt.channel, priority=message.priority, status=event.status,
        country=agent.planner.outcome_country(message.phone_number), callback=True,
        cost=event.cost if event.cost is not None else 0.0, accepted_at=attempt.finished_at,
        time_to_deliver_ms=time_to_deliver_ms(attempt, event, now)))
