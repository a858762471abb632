"""The ``webhook`` event sink: signed Standard Webhooks from a durable outbox.

``emit`` only wakes the sink's pump thread: the events are already in the database (written in
the same transaction as the change they describe), and the pump turns them into deliveries,
signs each one (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; HMAC-SHA256 with
the ``whsec_`` secret, via the ``standardwebhooks`` package) and POSTs it. A failed delivery
is retried with exponential backoff and jitter until its retry horizon (a day by default) has
passed, then dead-lettered; ``otpagent webhooks retry`` revives it. If the receiver or the agent
is down, nothing is lost: on restart the pump resumes from the endpoint's cursor.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from otpagent.backoff import backoff_delay
from otpagent.errors import ConfigError
from otpagent.logs import get_logger
from otpagent.model import Event
from otpagent.protocols import Capability, Delivery, PluginContext, WebhookOutbox, event_payload
from otpagent.settings import describes
from otpagent.sinks.webhook_settings import WebhookSection, WebhookSettings, parse_webhook_settings
from otpagent.sinks.webhook_target import TargetRefused, check_resolved
from otpagent.storage.capabilities import require

__all__ = ["WebhookSink", "create_webhook_sink"]

log = get_logger("otpagent.webhooks")

#: A failed delivery waits at least half its backoff window (equal jitter: a receiver that is
#: down is not hit again early).
WEBHOOK_JITTER_FLOOR = 0.5

#: Events the core publishes on the bus without storing them; the sink stores them itself.
BUS_ONLY_EVENTS = frozenset({"otp_verified", "otp_rejected", "fraud_prefix_held", "fraud_prefix_released"})


class WebhookSink:
    """One endpoint: pulls events from the outbox and delivers them on a background thread."""

    def __init__(self, settings: WebhookSettings, outbox: WebhookOutbox, *,
                 clock: Callable[[], float] = time.time) -> None:
        import httpx

        self.settings = settings
        self.outbox = outbox
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._client = httpx.Client(timeout=settings.timeout_seconds, follow_redirects=False,
                                    headers={"User-Agent": "otpagent-webhooks/1"})
        from standardwebhooks import Webhook

        self._signer = Webhook(settings.secret)
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        outbox.ensure_endpoint(settings.endpoint, clock())

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    def wants(self, event_type: str) -> bool:
        return self.settings.events is None or event_type in self.settings.events

    @property
    def event_types(self) -> frozenset[str] | None:
        """The endpoint's ``events`` (None: every event): the bus hands it only those."""
        return None if self.settings.events is None else frozenset(self.settings.events)

    # -- EventSink -----------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Wake the pump (starting it on first use). Bus-only events are stored first."""
        if event.type in BUS_ONLY_EVENTS and self.wants(event.type):
            self.outbox.add(self.endpoint, event.type,
                            event_payload(event.type, event.message_id, event.at, event.data), self.clock())
        self.start()
        self._wake.set()

    def start(self) -> None:
        """Start the pump thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=f"otpagent-webhook-{self.endpoint[:40]}",
                                                daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the pump after the delivery in flight (bounded by the HTTP timeout)."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.settings.timeout_seconds + 5.0)
        self._client.close()

    # -- pump ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                busy = self.pump_once()
            except Exception:  # the pump must survive a bad moment of the database
                log.exception("webhook_pump_failed", endpoint=self.endpoint)
                busy = False
            if not busy:
                self._wake.wait(self.settings.poll_interval_seconds)

    def pump_once(self) -> bool:
        """Pull new events, deliver what is due; returns whether a full batch was handled."""
        now = self.clock()
        while self.outbox.pull(self.endpoint, self.settings.events, now) and not self._stopping.is_set():
            now = self.clock()
        lease = self.settings.timeout_seconds * 2 + 30.0
        batch = self.outbox.claim(self.endpoint, self.owner, lease, self.clock())
        for i, delivery in enumerate(batch):
            if self._stopping.is_set():
                # Hand the rest back now, so another process (or our successor) need not wait out the lease.
                self.outbox.release([d.id for d in batch[i:]], self.owner)
                break
            self.deliver(delivery)
        if now - self._last_purge > 3600.0:
            self._last_purge = now
            self.outbox.purge(now - self.settings.retain_days * 86400.0)
        return len(batch) >= 20

    def deliver(self, delivery: Delivery) -> bool:
        """Sign and POST one delivery, then record the outcome; returns whether it was accepted."""
        body = json.dumps(delivery.payload, separators=(",", ":"))
        now = self.clock()
        try:
            check_resolved(self.settings.url, allow_private=self.settings.allow_private)
            signature = self._signer.sign(delivery.webhook_id, datetime.fromtimestamp(now, UTC), body)
            response = self._client.post(self.settings.url, content=body.encode(), headers={
                "content-type": "application/json", "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(int(now)), "webhook-signature": signature})
        except TargetRefused as exc:
            return self._failed(delivery, f"refused: {exc}")
        except Exception as exc:  # network errors of every kind are a failed attempt, retried
            return self._failed(delivery, f"{type(exc).__name__}: {str(exc)[:200]}")
        if 200 <= response.status_code < 300:
            self.outbox.mark_delivered(delivery.id, self.owner, self.clock())
            return True
        return self._failed(delivery, f"HTTP {response.status_code}")

    def _failed(self, delivery: Delivery, error: str) -> bool:
        now = self.clock()
        if now - delivery.cycle_started_at >= self.settings.horizon_seconds:
            self.outbox.mark_dead(delivery.id, self.owner, error, now)
            log.warning("webhook_dead_lettered", endpoint=self.endpoint, delivery_id=delivery.id, error=error)
            return False
        delay = backoff_delay(delivery.attempts + 1, self.settings.base_delay_seconds,
                              self.settings.max_delay_seconds, self._rng, floor=WEBHOOK_JITTER_FLOOR)
        self.outbox.schedule_retry(delivery.id, self.owner, error, now + delay, now)
        log.info("webhook_retry_scheduled", endpoint=self.endpoint, delivery_id=delivery.id, error=error,
                 retry_in=round(delay, 3))
        return False


@describes(WebhookSection)
def create_webhook_sink(settings: Mapping[str, Any], context: PluginContext) -> WebhookSink:
    """Factory registered as ``webhook`` (errors say ``sinks[]``: a factory is not told its index)."""
    parsed = parse_webhook_settings(settings, "sinks[].")
    if context.storage is None:
        raise ConfigError("sinks[].plugin", "the webhook sink needs the agent's storage")
    outboxes = require(context.storage, Capability.WEBHOOK_OUTBOXES, config_path="sinks[].plugin",
                       needed_by="the webhook sink")
    return WebhookSink(parsed, outboxes.webhook_outbox())
