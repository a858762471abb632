"""otpagent: deliver one-time passcodes, alerts, notifications and reminders.

The public API::

    from otpagent import IntelligentOTPAgent, MessageRequest, Priority

    with IntelligentOTPAgent() as agent:
        agent.start_processing()
        message_id = agent.send_otp("+447700900123", user_id="user123")
"""

from otpagent.agent import IntelligentOTPAgent
from otpagent.errors import ConfigError, InvalidRequest, LimitsRefused, OtpagentError, PluginNotFound, RateLimited
from otpagent.model import (
    Attempt,
    DeliveryReport,
    Envelope,
    MessageRequest,
    MessageType,
    Priority,
    SendResult,
    Status,
)

__all__ = [
    "Attempt",
    "ConfigError",
    "DeliveryReport",
    "Envelope",
    "IntelligentOTPAgent",
    "InvalidRequest",
    "LimitsRefused",
    "MessageRequest",
    "MessageType",
    "OtpagentError",
    "PluginNotFound",
    "Priority",
    "RateLimited",
    "SendResult",
    "Status",
]
