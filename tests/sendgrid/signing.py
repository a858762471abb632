"""Signs Event Webhook batches the way SendGrid does, with a key pair made for the test.

SendGrid signs ``timestamp + payload`` with ECDSA P-256 / SHA-256 and sends the DER signature
base64-encoded; the verification key it shows in Mail Settings is the base64 DER public key.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class EventSigner:
    """A fresh P-256 key pair; ``public_key`` is what goes into ``webhook_public_key``."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, payload: bytes, timestamp: str) -> str:
        signature = self._private.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def request(self, events: list[dict[str, Any]], *, timestamp: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a signed webhook POST carrying ``events``."""
        payload = json.dumps(events, separators=(",", ":")).encode()
        ts = str(int(time.time() if timestamp is None else timestamp))
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: self.sign(payload, ts), TIMESTAMP_HEADER: ts}
        return payload, headers


def event(kind: str, *, provider_id: str | None, message_id: str | None, **extra: Any) -> dict[str, Any]:
    """One event as SendGrid posts it (custom args appear as top-level fields)."""
    body: dict[str, Any] = {
        "email": "user@example.com",
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["otpagent", "otp"],
    }
    if provider_id is not None:
        body["sg_message_id"] = f"{provider_id}.filterdrecv-5645d9c87f-2bt9k-1-64B5A0A8-2.0"
    if message_id is not None:
        body["otpagent_message_id"] = message_id
    body.update(extra)
    return body
