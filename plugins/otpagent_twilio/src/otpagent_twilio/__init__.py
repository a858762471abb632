"""otpagent-twilio: SMS, WhatsApp and voice channels on the official Twilio SDK, plus the signed
status-callback receiver that turns Twilio's delivery reports into otpagent statuses."""

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
