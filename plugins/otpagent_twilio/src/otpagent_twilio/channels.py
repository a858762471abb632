"""The three Twilio channels: SMS and WhatsApp (Messages API) and voice (Calls API).

Each channel owns one SDK ``Client`` whose HTTP client goes to ``api_config.base_url`` with a
timeout, sends through the official SDK, and classifies every failure into a ``SendResult``
(see :mod:`otpagent_twilio.classify`). When the server has a public URL, each message asks Twilio
for status callbacks at ``{public_url}/callbacks/twilio/{channel}?message_id={id}``, which the
route in :mod:`otpagent_twilio.callbacks` checks and applies.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import requests
from twilio.base.exceptions import TwilioException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from otpagent.model import Envelope, SendResult
from otpagent.protocols import ChannelSpec
from otpagent.recipients import country_of
from otpagent_twilio.classify import classify_error
from otpagent_twilio.plugin import CALLBACK_ROUTE
from otpagent_twilio.segments import count_segments
from otpagent_twilio.settings import Template, TwilioSettings, parse_settings
from otpagent_twilio.transport import BaseUrlHttpClient
from otpagent_twilio.twiml import code_twiml, message_twiml

__all__ = [
    "CALLBACK_ROUTE",
    "SmsChannel",
    "TwilioChannel",
    "VoiceChannel",
    "WhatsAppChannel",
    "callback_path",
    "create_sms_channel",
    "create_voice_channel",
    "create_whatsapp_channel",
]

#: The status-callback route, mounted by the server; ``{channel}`` is the channel's config name.
#: Call progress events we ask for; busy, no-answer, failed and canceled arrive as "completed".
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
#: Twilio's limit on the ``Twiml`` parameter of a call.
MAX_TWIML = 4000
_PLACEHOLDER = re.compile(r"\{(code|body|minutes)\}")


def callback_path(channel_name: str) -> str:
    """The callback path of one channel (its name percent-encoded)."""
    return CALLBACK_ROUTE.replace("{channel}", quote(channel_name, safe=""))


class TwilioChannel:
    """What the three channels share: client, cost, callbacks, error handling."""

    kind = "sms"
    max_length = 1600  # Twilio's limit on one message request's Body

    def __init__(self, settings: TwilioSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self._http = BaseUrlHttpClient(settings.base_url, settings.timeout_seconds)
        username, password = settings.credentials
        self._client = Client(username, password, account_sid=settings.account_sid, http_client=self._http)
        # Twilio signs callbacks with the account's auth token, even when we call it with an API key.
        self._validator = RequestValidator(settings.auth_token) if settings.auth_token else None

    # -- Channel protocol ------------------------------------------------------------------------
    def supports(self, envelope: Envelope) -> bool:
        """Twilio channels reach phone numbers."""
        return bool(envelope.phone_number)

    def check(self, envelope: Envelope) -> str | None:
        """Why this content cannot go over this channel, or None."""
        if len(envelope.body) > self.max_length:
            return f"body is {len(envelope.body)} characters; {self.kind} allows at most {self.max_length}"
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        """Price per message (per segment for SMS), by destination country when configured."""
        return self.unit_price(envelope) * self.billable_units(envelope)

    def unit_price(self, envelope: Envelope) -> float:
        """The configured price for the envelope's destination country, else the channel's."""
        if not self.settings.country_costs:  # finding the country costs a parse: only when priced by it
            return self.settings.cost
        country = country_of(envelope.phone_number) if envelope.phone_number else None
        if country is not None and country in self.settings.country_costs:
            return self.settings.country_costs[country]
        return self.settings.cost

    def billable_units(self, envelope: Envelope) -> int:
        """How many units Twilio bills for this envelope (one message or call)."""
        return 1

    def send(self, envelope: Envelope) -> SendResult:
        """Create the message or call; classify any failure (never raises for Twilio errors)."""
        if not envelope.phone_number:
            return SendResult.permanent("no phone number to send to", code="no-recipient")
        try:
            sid = self._create(envelope)
        except (TwilioException, requests.RequestException, ValueError) as exc:
            return classify_error(exc, self._http.last_response(), self.settings.timeout_seconds)
        return SendResult.accepted(sid, cost=self.estimate_cost(envelope))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # -- status callbacks ------------------------------------------------------------------------
    def status_callback_url(self, message_id: str) -> str | None:
        """Where Twilio should report this message's progress, or None when it cannot."""
        base = self.settings.callback_base_url
        if not (self.settings.status_callback and base and self._validator):
            return None
        return f"{base}{callback_path(self.name)}?{urlencode({'message_id': message_id})}"

    def callback_url_seen(self, query: str) -> str | None:
        """The URL Twilio requested (and signed) for a callback arriving with ``query``."""
        base = self.settings.callback_base_url
        if not base:
            return None
        return f"{base}{callback_path(self.name)}" + (f"?{query}" if query else "")

    def signature_valid(self, url: str, params: Any, signature: str, algorithm: str | None = None) -> bool:
        """Whether ``signature`` is Twilio's signature of ``url`` and ``params``."""
        if self._validator is None or not signature:
            return False
        return bool(self._validator.validate(url, params, signature, algorithm))

    # -- provider call ---------------------------------------------------------------------------
    def _create(self, envelope: Envelope) -> str:
        raise NotImplementedError

    def _message_sender(self, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.settings.sender:
            out["from_"] = prefix + self.settings.sender
        if self.settings.messaging_service_sid:
            out["messaging_service_sid"] = self.settings.messaging_service_sid
        return out

    def _callback(self, envelope: Envelope) -> dict[str, Any]:
        url = self.status_callback_url(envelope.message_id)
        return {"status_callback": url} if url else {}


class SmsChannel(TwilioChannel):
    """``twilio-sms``: Messages with ``From`` or a Messaging Service."""

    kind = "sms"

    def billable_units(self, envelope: Envelope) -> int:
        """Segments, counted as carriers count them."""
        return count_segments(envelope.body).segments

    def _create(self, envelope: Envelope) -> str:
        kwargs: dict[str, Any] = {"to": envelope.phone_number, "body": envelope.body}
        kwargs.update(self._message_sender())
        kwargs.update(self._callback(envelope))
        if self.settings.messaging_service_sid and envelope.expires_at is not None:
            # A code that sits in Twilio's queue past its expiry is useless: let Twilio drop it.
            # (ValidityPeriod is honoured for Messaging Service sends only.)
            kwargs["validity_period"] = int(min(36000, max(1, envelope.expires_at - time.time())))
        message = self._client.api.v2010.account.messages.create(**kwargs)
        return str(message.sid)


class WhatsAppChannel(TwilioChannel):
    """``twilio-whatsapp``: templates for OTPs and business-initiated messages, else free-form."""

    kind = "whatsapp"
    max_length = 4096

    def check(self, envelope: Envelope) -> str | None:
        """OTPs must use an approved template (WhatsApp rejects free-form ones, error 63016)."""
        if envelope.code is not None and self._template(envelope) is None:
            return "WhatsApp OTPs need an approved authentication template: set api_config.content_sid"
        if self._template(envelope) is None:
            return super().check(envelope)
        return None

    def _template(self, envelope: Envelope) -> Template | None:
        return self.settings.templates.get(envelope.message_type.value)

    def _create(self, envelope: Envelope) -> str:
        kwargs: dict[str, Any] = {"to": f"whatsapp:{envelope.phone_number}"}
        kwargs.update(self._message_sender("whatsapp:"))
        kwargs.update(self._callback(envelope))
        template = self._template(envelope)
        if template is not None:
            kwargs["content_sid"] = template.content_sid
            kwargs["content_variables"] = json.dumps(_fill(template.variables, envelope), ensure_ascii=False)
        else:
            kwargs["body"] = envelope.body
        message = self._client.api.v2010.account.messages.create(**kwargs)
        return str(message.sid)


class VoiceChannel(TwilioChannel):
    """``twilio-voice``: a call that reads the code digit by digit, several times."""

    kind = "voice"

    def check(self, envelope: Envelope) -> str | None:
        """The TwiML must fit Twilio's 4,000-character limit."""
        size = len(self._twiml(envelope))
        if size > MAX_TWIML:
            return f"the call script is {size} characters of TwiML; Twilio allows at most {MAX_TWIML}"
        return None

    def _twiml(self, envelope: Envelope) -> str:
        s = self.settings
        if envelope.code:
            return code_twiml(envelope.code, intro=s.intro, voice=s.voice, language=s.language, repeat=s.repeat,
                              pause_seconds=s.pause_seconds)
        return message_twiml(envelope.body, voice=s.voice, language=s.language, repeat=min(s.repeat, 2),
                             pause_seconds=s.pause_seconds)

    def _create(self, envelope: Envelope) -> str:
        kwargs: dict[str, Any] = {"to": envelope.phone_number, "from_": self.settings.sender,
                                  "twiml": self._twiml(envelope)}
        callback = self._callback(envelope)
        if callback:
            kwargs.update(callback, status_callback_event=CALL_EVENTS, status_callback_method="POST")
        call = self._client.api.v2010.account.calls.create(**kwargs)
        return str(call.sid)


def _fill(variables: Mapping[str, str], envelope: Envelope) -> dict[str, str]:
    """Template variables with ``{code}``, ``{body}`` and ``{minutes}`` replaced in one pass."""
    minutes = ""
    if envelope.expires_at is not None:
        minutes = str(max(1, math.ceil((envelope.expires_at - time.time()) / 60)))
    values = {"code": envelope.code or "", "body": envelope.body, "minutes": minutes}
    return {name: _PLACEHOLDER.sub(lambda m: values[m.group(1)], text) for name, text in variables.items()}


def create_sms_channel(spec: ChannelSpec) -> SmsChannel:
    """Factory for ``"plugin": "twilio-sms"``."""
    return SmsChannel(parse_settings(spec, "sms"))


def create_whatsapp_channel(spec: ChannelSpec) -> WhatsAppChannel:
    """Factory for ``"plugin": "twilio-whatsapp"``."""
    return WhatsAppChannel(parse_settings(spec, "whatsapp"))


def create_voice_channel(spec: ChannelSpec) -> VoiceChannel:
    """Factory for ``"plugin": "twilio-voice"``."""
    return VoiceChannel(parse_settings(spec, "voice"))
