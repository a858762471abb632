"""otpagent-sendgrid: email over Twilio SendGrid's v3 Mail Send, and its signed Event Webhook.

Names are imported on first use: otpagent loads this package's plugin at every start-up, and
the SendGrid SDK is a heavy import that a process not sending email should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent_sendgrid.channel import SendGridEmailChannel, create_sendgrid_channel
    from otpagent_sendgrid.webhook import WEBHOOK_PATH, receive_events

__all__ = ["WEBHOOK_PATH", "SendGridEmailChannel", "create_sendgrid_channel", "receive_events"]
_HOMES = {"SendGridEmailChannel": "channel", "create_sendgrid_channel": "channel", "WEBHOOK_PATH": "webhook",
          "receive_events": "webhook"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"otpagent_sendgrid.{_HOMES[name]}"), name)
    raise AttributeError(name)
