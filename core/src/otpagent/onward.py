"""Where a message goes when its current channel has failed it: the one fallback decision.

A channel can fail a message two ways: the send itself fails (the dispatcher, holding the
message's lease), or the provider accepted it and a callback later says ``undelivered`` or
``failed`` (the provider-event path, holding no lease). Both come here, so the rule is written
once: on to the next usable channel of the stored route, due at once; or, when there is none,
or an OTP's code has expired meanwhile, the end (an expired code is never sent late).

The caller brings what makes the change safe for it (``template``: the dispatcher's lease, or
the callback's "still on this attempt" conditions) and gets back the update, its events and
the name of the counter that records what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from otpagent.model import Event, Message, Status
from otpagent.protocols import MessageUpdate

if TYPE_CHECKING:
    from otpagent.routing.planner import RoutePlanner

__all__ = ["Onward", "route_onward"]


@attrs.frozen
class Onward:
    """The change that moves a failed message on, and which counter it bumps when applied:
    ``fallbacks``, ``failed`` or ``expired``."""

    update: MessageUpdate
    events: tuple[Event, ...]
    counter: str

    @property
    def falls_back(self) -> bool:
        return self.counter == "fallbacks"


def route_onward(planner: RoutePlanner, message: Message, error: str, now: float, *, template: MessageUpdate,
                 end_status: Status = Status.FAILED, end_events: Sequence[Event] | None = None) -> Onward:
    """The next step of ``message`` after ``error`` on its current channel.

    ``template`` carries the caller's conditions and fields (``expected_owner``,
    ``expected_statuses``, ``attempt_count``...); its ``status`` is replaced. ``end_status`` is
    the message's status when no channel is left; ``end_events`` replaces the default
    ``{end_status, reason}`` event (a callback already records the provider's own status event).
    """
    expired = message.expires_at is not None and now >= message.expires_at
    index = None if expired else planner.next_channel(message)
    if index is not None:
        update = attrs.evolve(template, status=Status.RETRYING, due_at=now, route_index=index, channel_attempts=0,
                              last_error=error)
        event = Event(type="fallback", message_id=message.id, at=now,
                      data={"from": message.current_channel, "to": message.route[index], "reason": error})
        return Onward(update=update, events=(event,), counter="fallbacks")
    status = Status.EXPIRED if expired else end_status
    update = attrs.evolve(template, status=status, last_error=error, clear_secret=True)
    if end_events is None or expired:
        end_events = (Event(type=status.value, message_id=message.id, at=now, data={"reason": error}),)
    return Onward(update=update, events=tuple(end_events), counter="expired" if expired else "failed")
