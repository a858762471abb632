"""The ``http-sms`` channel: SMS through a generic HTTP gateway.

The gateway's API, as many operators run it::

    POST <base_url>/v1/messages
    Authorization: Bearer <token>
    {"to": "+447700900123", "from": "Acme", "text": "...", "reference": "<otpagent message id>"}

    202 {"id": "gw_81c2...", "cost": 0.035}                   (cost is optional)
    4xx/5xx {"error": {"code": "invalid_recipient", "message": "..."}}

One ``httpx.Client`` per channel keeps connections alive across sends and worker threads, and
bounds every phase of every call (connect, write, each read, waiting for a pooled connection)
by ``timeout_seconds``. ``send`` never raises for anything the gateway or the network does: it
returns a :class:`~otpagent.model.SendResult` (see :mod:`otpagent_http_sms.classify`). The token
and the OTP code are masked in every reason the channel reports, whatever the gateway echoes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs
import httpx

from otpagent.logs import get_logger
from otpagent.model import Envelope, MessageType, SendResult
from otpagent_http_sms.classify import classify_answer
from otpagent_http_sms.settings import HttpSmsSettings

__all__ = ["MESSAGES_PATH", "HttpSmsChannel", "sms_parts"]

log = get_logger("otpagent_http_sms")

MESSAGES_PATH = "/v1/messages"
#: Idle connections kept open for reuse; beyond that a busy moment opens (and closes) more.
KEEPALIVE_CONNECTIONS = 64
_MASK = "***"

# The GSM 03.38 alphabet: texts made only of these go 160 characters a part, else 70 (UCS-2).
_GSM7 = frozenset("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
                  "abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each


class HttpSmsChannel:
    """A :class:`~otpagent.protocols.Channel` of kind ``sms`` on one gateway account."""

    kind = "sms"

    def __init__(self, settings: HttpSmsSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self.settings = settings
        self._clock = clock
        self._url = settings.base_url + MESSAGES_PATH
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {settings.token}", "Accept": "application/json",
                     "User-Agent": "otpagent-http-sms/0.1"},
            timeout=httpx.Timeout(settings.timeout_seconds),
            # No cap on connections (a worker never queues for one), a bounded number kept idle.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
            follow_redirects=False,  # a redirect means base_url is wrong; never resend the token elsewhere
        )

    def __repr__(self) -> str:
        return f"HttpSmsChannel(name={self.name!r}, base_url={self.settings.base_url!r})"

    # -- the Channel protocol ------------------------------------------------------------------
    def supports(self, envelope: Envelope) -> bool:
        """The gateway reaches phone numbers (the core has already normalised them to E.164)."""
        return bool(envelope.phone_number)

    def check(self, envelope: Envelope) -> str | None:
        """The gateway refuses texts over its length limit: say so before trying."""
        if len(envelope.body) > self.settings.max_length:
            return f"text is {len(envelope.body)} characters; the gateway allows at most {self.settings.max_length}"
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        """The configured price of one part, times the parts this text is split into."""
        return self.settings.cost * sms_parts(envelope.body)

    def send(self, envelope: Envelope) -> SendResult:
        """POST the message and classify the answer; never raises for gateway or network trouble."""
        if not envelope.phone_number:
            return SendResult.permanent("no phone number to send to", code="no-recipient")
        if envelope.message_type is MessageType.OTP and not envelope.code:
            # The code was dropped (the message was sent or expired meanwhile): never send "{code}".
            return SendResult.permanent("the OTP code is no longer available", code="no-code")
        payload = {"to": envelope.phone_number, "from": self.settings.sender, "text": envelope.body,
                   "reference": envelope.message_id}
        try:
            response = self._client.post(self._url, json=payload)
        except httpx.TimeoutException:
            return SendResult.transient(f"no answer from the gateway within {self.settings.timeout_seconds:g}s",
                                        code="timeout")
        except httpx.TransportError as exc:
            return SendResult.transient(f"cannot reach the gateway ({type(exc).__name__})", code="connection")
        except httpx.HTTPError as exc:  # anything else httpx raises (a malformed answer...)
            return SendResult.transient(f"HTTP error talking to the gateway ({type(exc).__name__})", code="http")
        result = classify_answer(response.status_code, response.content, response.headers.get("Retry-After"),
                                 now=self._clock())
        if result.ok:
            if result.provider_message_id is None:
                # Accepted all the same: retrying would send the text twice.
                log.warning("http_sms_accepted_without_id", channel=self.name, message_id=envelope.message_id,
                            status=response.status_code)
            if result.cost is None:
                result = attrs.evolve(result, cost=self.estimate_cost(envelope))
            return result
        return attrs.evolve(result, reason=self._masked(result.reason or "", envelope.code),
                            code=self._masked(result.code or "", envelope.code))

    def close(self) -> None:
        """Close the pooled connections (called once, when the agent closes)."""
        self._client.close()

    # -- helpers -------------------------------------------------------------------------------
    def _masked(self, text: str, code: str | None) -> str:
        """``text`` with the token and the OTP code hidden (a gateway may echo either back)."""
        for secret in (self.settings.token, code):
            if secret:
                text = text.replace(secret, _MASK)
        return text


def sms_parts(text: str) -> int:
    """How many SMS parts ``text`` takes (GSM-7: 160, or 153 per part when split; else UCS-2:
    70, or 67 per part). An estimate for pricing: the gateway bills what it bills."""
    if all(ch in _GSM7 or ch in _GSM7_EXTENDED for ch in text):
        units = len(text) + sum(ch in _GSM7_EXTENDED for ch in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2  # characters outside the BMP take two units
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)
