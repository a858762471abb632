"""What a provider-callback endpoint (an HTTP route plugin) may use: :class:`CallbackHost`.

An endpoint registered through ``otpagent_register_http_routes`` is called as
``await endpoint(request, host)``. The host is deliberately small: the configured channels (to
find the one a callback is for and check the provider's signature with its credentials), the
attempts the provider knows, the agent's clock, and the one way to report what the provider
says (:meth:`CallbackHost.record_provider_event`, which de-duplicates and applies the report in
one transaction and moves an undelivered message on to its next channel). No endpoint reaches
into the agent, its storage or its dispatcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from otpagent.model import Attempt
from otpagent.protocols.channels import Channel
from otpagent.protocols.provider_events import ProviderEvent, ProviderEventResult

__all__ = ["CallbackHost"]


@runtime_checkable
class CallbackHost(Protocol):
    """The agent as a provider callback sees it."""

    @property
    def channels(self) -> Mapping[str, Channel]:
        """The configured channels by name (read-only)."""

    def now(self) -> float:
        """The agent's clock (POSIX seconds): use it for signature timestamp windows, so tests
        can drive time."""

    def find_attempt(self, provider_message_id: str) -> Attempt | None:
        """The latest attempt the provider knows by this id, or None (yet: our record of a
        send can lag a fast provider's first callback by a few milliseconds)."""

    def attempts_of(self, message_id: str) -> Sequence[Attempt]:
        """Every attempt of one of our messages, in order."""

    def record_provider_event(self, event: ProviderEvent) -> ProviderEventResult:
        """Report what the provider says happened (see
        :class:`~otpagent.protocols.ProviderEventOutcome` for the answers)."""
