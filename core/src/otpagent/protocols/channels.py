"""The channel protocol: one provider account on one medium (SMS, WhatsApp, voice, email...)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from otpagent.model import Envelope, SendResult

__all__ = ["Channel"]


@runtime_checkable
class Channel(Protocol):
    """A way to deliver a message: one provider account on one medium.

    ``send`` must not raise for provider errors: it classifies them into a :class:`SendResult`
    (accepted / transient / permanent, and for permanent whether the message or the whole
    channel is at fault). It must finish within a bounded time (set an HTTP timeout).
    """

    name: str
    kind: str

    def supports(self, envelope: Envelope) -> bool:
        """True when this channel can address the envelope's recipient (phone, email...)."""

    def check(self, envelope: Envelope) -> str | None:
        """Why this channel cannot carry this content (too long...), or None when it can."""

    def estimate_cost(self, envelope: Envelope) -> float:
        """Expected cost of one send of this envelope, in the configured currency."""

    def send(self, envelope: Envelope) -> SendResult:
        """Hand the envelope to the provider and classify the answer."""

    def close(self) -> None:
        """Release connections; called once at shutdown."""
