"""The outbox contract, re-exported where the webhook sink uses it.

The contract itself (:class:`~otpagent.protocols.WebhookOutbox`, :class:`Delivery`,
:class:`DeliveryStatus`, :func:`event_payload`) lives in :mod:`otpagent.protocols`, so storage
backends implement it without importing from the sinks. A backend offers its outbox through the
``WebhookOutboxes`` capability (``storage.webhook_outbox()``).
"""

from __future__ import annotations

from otpagent.protocols import Delivery, DeliveryStatus, WebhookOutbox, event_payload, event_type_name

__all__ = ["Delivery", "DeliveryStatus", "WebhookOutbox", "event_payload", "event_type_name"]
