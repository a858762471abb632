"""The :class:`~otpagent.protocols.CallbackHost` an agent hands to provider-callback endpoints.

A thin, read-mostly view: plugins that receive provider callbacks get exactly what they need
(channels, attempts, the clock, ``record_provider_event``) and nothing else of the agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from otpagent.model import Attempt
from otpagent.protocols import Channel, ProviderEvent, ProviderEventResult

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["AgentCallbackHost"]


class AgentCallbackHost:
    """:class:`~otpagent.protocols.CallbackHost` over one agent."""

    def __init__(self, agent: IntelligentOTPAgent) -> None:
        self._agent = agent
        self._channels: Mapping[str, Channel] = MappingProxyType(agent.channels)

    @property
    def channels(self) -> Mapping[str, Channel]:
        return self._channels

    def now(self) -> float:
        return self._agent.clock()

    def find_attempt(self, provider_message_id: str) -> Attempt | None:
        return self._agent.storage.find_by_provider_id(provider_message_id)

    def attempts_of(self, message_id: str) -> Sequence[Attempt]:
        return self._agent.storage.get_attempts(message_id)

    def record_provider_event(self, event: ProviderEvent) -> ProviderEventResult:
        return self._agent.record_provider_event(event)
