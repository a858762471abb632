"""otpagent-twilio: SMS, WhatsApp and voice channels on the official Twilio SDK, plus the signed
status-callback receiver that turns Twilio's delivery reports into otpagent statuses.

Names are imported on first use: otpagent loads this package's plugin at every start-up, and
the Twilio SDK is a heavy import that a process not using Twilio should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent_twilio.channels import SmsChannel, TwilioChannel, VoiceChannel, WhatsAppChannel
    from otpagent_twilio.segments import Segmentation, SmsEncoding, count_segments

__all__ = [
    "Segmentation",
    "SmsChannel",
    "SmsEncoding",
    "TwilioChannel",
    "VoiceChannel",
    "WhatsAppChannel",
    "count_segments",
]
_HOMES = {"SmsChannel": "channels", "TwilioChannel": "channels", "VoiceChannel": "channels",
          "WhatsAppChannel": "channels", "Segmentation": "segments", "SmsEncoding": "segments",
          "count_segments": "segments"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"otpagent_twilio.{_HOMES[name]}"), name)
    raise AttributeError(name)
