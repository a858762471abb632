"""The webhook sink's retry schedule, and the outbox contract re-exported where the sink uses it.

The contract itself (:class:`~otpagent.protocols.WebhookOutbox`, :class:`Delivery`,
:class:`DeliveryStatus`, :func:`event_payload`) lives in :mod:`otpagent.protocols`, so storage
backends implement it without importing from the sinks. A backend offers its outbox through the
``WebhookOutboxes`` capability (``storage.webhook_outbox()``).
"""

from __future__ import annotations

import random

from otpagent.protocols import Delivery, DeliveryStatus, WebhookOutbox, event_payload, event_type_name

__all__ = ["Delivery", "DeliveryStatus", "WebhookOutbox", "backoff_delay", "event_payload", "event_type_name"]


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base*2^(n-1) capped, scaled by a factor in [0.5, 1.0]."""
    raw = min(cap, base * float(2 ** min(attempts - 1, 40)))
    return raw * (0.5 + rng.random() / 2)
