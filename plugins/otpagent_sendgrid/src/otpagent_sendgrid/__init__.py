"""otpagent-sendgrid: email over Twilio SendGrid's v3 Mail Send, and its signed Event Webhook."""

from otpagent_sendgrid.channel import SendGridEmailChannel, create_sendgrid_channel
from otpagent_sendgrid.webhook import WEBHOOK_PATH, receive_events

__all__ = ["WEBHOOK_PATH", "SendGridEmailChannel", "create_sendgrid_channel", "receive_events"]
