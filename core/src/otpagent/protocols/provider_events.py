"""What a provider callback reports, and what became of it (the provider events capability)."""

from __future__ import annotations

import enum

import attrs

from otpagent.model import Status

__all__ = ["ProviderEvent", "ProviderEventOutcome", "ProviderEventResult"]


@attrs.frozen(kw_only=True)
class ProviderEvent:
    """One status report from a provider (a Twilio status callback, a SendGrid event...)."""

    #: Who reported it: ``"twilio"``, ``"sendgrid"``... Event ids are unique per source.
    source: str
    #: The provider's id for this event, the de-duplication key (providers retry).
    event_id: str
    #: The id the provider gave the send (``Attempt.provider_message_id``).
    provider_message_id: str
    status: Status
    error_code: str | None = None
    error_message: str | None = None
    #: The provider's timestamp of this status (POSIX seconds), when it gives one.
    occurred_at: float | None = None
    #: The price the provider billed for the send, when the report carries it (Twilio's ``Price``,
    #: as a positive amount in the channel's currency); routing learns real prices from it.
    cost: float | None = None


class ProviderEventOutcome(enum.StrEnum):
    #: The attempt moved to the event's status.
    APPLIED = "applied"
    #: The attempt is already at or past that status (a late or repeated report); remembered.
    STALE = "stale"
    #: This event id was applied (or found stale) before: nothing changed.
    REPLAY = "replay"
    #: No attempt has this provider id: nothing changed and nothing was remembered.
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class ProviderEventResult:
    outcome: ProviderEventOutcome
    #: Whether the message itself changed too (the conditional update applied).
    message_updated: bool = False
