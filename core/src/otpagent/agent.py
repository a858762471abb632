"""``IntelligentOTPAgent``: the public facade that composes storage, channels, routing and workers."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from otpagent import fields
from otpagent.bulk_intake import CHUNK_SIZE, as_batch, validated_chunks
from otpagent.circuit import CircuitBreakers
from otpagent.config import AgentConfig, ChannelConfig, load_config, parse_config
from otpagent.errors import ConfigError, FieldError, InvalidRequest, RateLimited
from otpagent.errors import collect_config_errors as _collected
from otpagent.events import EventBus
from otpagent.intake import new_message_id, parse_request, to_new_message
from otpagent.logs import get_logger
from otpagent.metrics import collect_metrics
from otpagent.model import (
    DeliveryReport,
    Event,
    Message,
    MessageRequest,
    MessageType,
    Priority,
    Status,
    mask_code,
    message_with,
    to_datetime,
)
from otpagent.otp import OtpPolicy, generate_code, normalise_recipient
from otpagent.plugin_checks import call_channel_factory, call_sink_factory, call_storage_factory, call_strategy_factory
from otpagent.plugins import Registry, build_registry
from otpagent.protocols import (
    Channel,
    ChannelSpec,
    EventSink,
    IdempotencyConflict,
    MessageUpdate,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    PluginContext,
    ProviderEvent,
    ProviderEventResult,
    RoutingStrategy,
    StorageBackend,
)
from otpagent.provider_events import record_provider_event
from otpagent.ratelimit import Bucket, checked_buckets
from otpagent.registration import PluginKind
from otpagent.routing.planner import RoutePlanner
from otpagent.storage.capabilities import AgentCapabilities, check_capabilities
from otpagent.storage.rows import queued_event
from otpagent.tracing import Tracing, build_tracing, parse_tracing
from otpagent.workerid import new_worker_id

if TYPE_CHECKING:
    from otpagent.dispatcher import Dispatcher
    from otpagent.fraud.guard import FraudGuard, PrefixStatus

__all__ = ["IntelligentOTPAgent"]

log = get_logger("otpagent.agent")

#: Batches longer than this go to a backend with the streamed enqueue in chunks; shorter ones
#: gain nothing from overlapping and keep the plain enqueue (group-committed on PostgreSQL).
STREAM_FROM = 2 * CHUNK_SIZE

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | AgentConfig | None


class IntelligentOTPAgent:
    """Send OTPs, alerts, notifications and reminders; verify codes; report on delivery.

    ``IntelligentOTPAgent()`` looks for its config in this order: ``$OTPAGENT_CONFIG``, then
    ``./config.json``, else the embedded default (SQLite file ``otpagent.db`` in the working
    directory, console channels); it logs which one it used. Pass a ``config.json`` path or an
    equivalent dict to choose explicitly. Use it as a context manager to stop workers and close connections on exit.
    """

    def __init__(self, config: ConfigSource = None, *, clock: Callable[[], float] = time.time,
                 registry: Registry | None = None, tracer_provider: Any = None) -> None:
        self.config = _load(config)
        self.clock = clock
        self.registry = registry or build_registry()
        self._closed = False
        context = PluginContext(config_dir=self.config.base_dir, public_url=self.config.public_url, clock=clock)
        backend = self.registry.lookup("storage_backends", self.config.storage_backend, "storage.backend")
        self.storage: StorageBackend = call_storage_factory(backend, "storage.backend", self.config.storage, context)
        try:
            #: The backend's capabilities, checked against what this configuration needs.
            self.capabilities: AgentCapabilities = check_capabilities(self.storage, self.config)
            context = attrs.evolve(context, storage=self.storage)
            self.channel_configs: dict[str, ChannelConfig] = {c.name: c for c in self.config.channels}
            self.channels: dict[str, Channel] = {}
            # Every plugin's section is checked, so that one run names every mistake.
            errors: list[ConfigError] = []
            for cfg in self.config.channels:
                if (channel := _collected(errors, self._build_channel, cfg, context)) is not None:
                    self.channels[cfg.name] = channel
            strategy_name = str(self.config.routing.get("strategy", "priority"))
            built_strategy = _collected(errors, self._build_strategy, strategy_name, context)
            sinks = [sink for i, section in enumerate(self.config.sinks)
                     if (sink := _collected(errors, self._build_sink, i, section, context)) is not None]
            if errors or built_strategy is None:
                raise ConfigError.combine(errors)
            self.strategy: RoutingStrategy = built_strategy
            self.bus = EventBus(sinks)
            caps = self.capabilities
            #: The OTP policy; None when ``otp.enabled`` is false.
            self.otp: OtpPolicy | None = None
            if self.config.otp.enabled and caps.otp_store is not None:
                self.otp = OtpPolicy.start(caps.otp_store, caps.shared_state, caps.rate_limits, self.config.otp,
                                           base_dir=self.config.base_dir, now=clock())
            #: The SMS-pumping guard (docs/fraud.md); None when OTPs or the guard are off.
            self.fraud_guard: FraudGuard | None = None
            if self.otp is not None and self.config.otp.fraud_guard.enabled:
                from otpagent.fraud.guard import FraudGuard

                self.fraud_guard = FraudGuard(caps.shared_state, self.config.otp.fraud_guard,
                                              on_event=lambda e: self.bus.publish([e]))
            worker_id = new_worker_id()
            self.breakers = CircuitBreakers(caps.shared_state, self.config.circuit, worker_id=worker_id,
                                            on_change=lambda e: self.bus.publish([e]))
            #: OpenTelemetry spans (``tracing`` config; ``tracer_provider``, else the global one).
            self.tracing: Tracing = build_tracing(
                parse_tracing(self.config.raw.get("tracing")), tracer_provider=tracer_provider,
                strategy=strategy_name, strategy_label=self.plugin_label("routing_strategies", strategy_name))
            self.planner = RoutePlanner(
                channels=self.channels, configs=self.channel_configs, strategy=self.strategy,
                breakers=self.breakers, storage=caps.housekeeping, voice_otp_enabled=self.config.otp.voice_enabled,
                clock=clock, on_event=lambda e: self.bus.publish([e]),
                strategy_label=self.plugin_label("routing_strategies", strategy_name),
            )
            self._worker_id = worker_id
            self._dispatcher: Dispatcher | None = None
            self._dispatcher_lock = threading.Lock()
        except BaseException:
            self._close_parts()
            raise

    def _build_channel(self, cfg: ChannelConfig, context: PluginContext) -> Channel:
        registered = self.registry.lookup("channels", cfg.plugin, f"channels.{cfg.name}.plugin")
        api_config = cfg.settings.get("api_config", {})
        spec = ChannelSpec(name=cfg.name, plugin=cfg.plugin, kind=cfg.kind, settings=cfg.settings,
                           api_config=api_config, cost=cfg.cost, context=context)
        return call_channel_factory(registered, f"channels.{cfg.name}.plugin", spec)

    def _build_strategy(self, name: str, context: PluginContext) -> RoutingStrategy:
        strategy = self.registry.lookup("routing_strategies", name, "routing.strategy")
        return call_strategy_factory(strategy, "routing.strategy", self.config.routing, context)

    def _build_sink(self, i: int, section: Mapping[str, Any], context: PluginContext) -> EventSink:
        sink = self.registry.lookup("event_sinks", section["plugin"], f"sinks[{i}].plugin")
        try:
            return call_sink_factory(sink, f"sinks[{i}].plugin", section, context)
        except ConfigError as exc:  # a factory cannot know its place in the list
            raise ConfigError.combine([ConfigError(e.path.replace("sinks[]", f"sinks[{i}]", 1), e.reason)
                                       for e in exc.errors]) from None

    def plugin_label(self, kind: PluginKind, name: str) -> str:
        """Who registered the plugin ``name`` of ``kind`` (``"channels"``, ``"routing_strategies"``,
        ``"storage_backends"``, ``"event_sinks"``), for errors and logs: ``acme-sms 1.0.2``,
        ``otpagent (built-in)`` or ``<plugin> (registered in process)``. For a configured channel:
        ``agent.plugin_label("channels", agent.channel_configs["SMS"].plugin)``.
        """
        return self.registry.label(kind, name)

    @property
    def dispatcher(self) -> Dispatcher:
        """The worker machinery (claiming, routing, sending, leases), built on first use: a
        process that only enqueues (a web app whose workers run elsewhere) never imports it."""
        if self._dispatcher is None:
            with self._dispatcher_lock:
                if self._dispatcher is None:
                    from otpagent.dispatcher import Dispatcher

                    codes = self.otp.sealer if self.otp is not None else None
                    labels = {name: self.plugin_label("channels", cfg.plugin)
                              for name, cfg in self.channel_configs.items()}
                    self._dispatcher = Dispatcher(
                        config=self.config, storage=self.storage, capabilities=self.capabilities,
                        channels=self.channels, channel_configs=self.channel_configs, planner=self.planner,
                        strategy=self.strategy, breakers=self.breakers, bus=self.bus, clock=self.clock,
                        worker_id=self._worker_id, plugin_labels=labels, codes=codes, tracing=self.tracing)
        return self._dispatcher

    def notify_workers(self) -> None:
        """Wake this process's claimer, if it has one, to look for the work just queued."""
        if self._dispatcher is not None:
            self._dispatcher.notify()

    # -- lifecycle -----------------------------------------------------------------------------
    def start_processing(self) -> None:
        """Start the background workers (idempotent)."""
        self.bus.start()
        self.dispatcher.start()

    def stop_processing(self, timeout: float | None = None) -> None:
        """Stop claiming new work, finish and record in-flight sends, then return."""
        if self._dispatcher is not None:
            self._dispatcher.stop(timeout)

    @property
    def is_running(self) -> bool:
        return self._dispatcher is not None and self._dispatcher.running

    def close(self) -> None:
        """Stop workers, flush sinks and release channels and storage."""
        if self._closed:
            return
        self._closed = True
        self.stop_processing()
        if self.fraud_guard is not None:
            try:
                self.fraud_guard.flush(self.clock())  # publish this process's last counts
            except Exception:  # closing must go on
                log.exception("fraud_guard_flush_failed")
        self._close_parts()

    def _close_parts(self) -> None:
        bus = getattr(self, "bus", None)
        if bus is not None:
            bus.close()
        for channel in getattr(self, "channels", {}).values():
            try:
                channel.close()
            except Exception:  # closing must go on for the rest
                log.exception("channel_close_failed", channel=getattr(channel, "name", "?"))
        self.storage.close()

    def __enter__(self) -> IntelligentOTPAgent:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------------
    def send_message(self, request: MessageRequest | Mapping[str, Any]) -> str:
        """Queue one message; returns its id (the existing id for a repeated idempotency key)."""
        with self.tracing.enqueue("send_message") as span:
            (message_id,) = self._queue([request])
            span.record(message_id)
            return message_id

    def send_bulk_messages(self, requests: Iterable[MessageRequest | Mapping[str, Any]]) -> list[str]:
        """Validate every request, then queue them all in one transaction; returns the ids."""
        with self.tracing.enqueue("send_bulk_messages") as span:
            ids = self._queue(as_batch(requests))
            span.record(ids)
            return ids

    def _queue(self, requests: Sequence[MessageRequest | Mapping[str, Any]]) -> list[str]:
        now = self.clock()
        items: list[NewMessage] = []
        chunks = validated_chunks(requests, now=now, check=self.routability, accepted=items)
        streamed = self.capabilities.streamed_enqueue
        try:
            if streamed is not None and len(requests) > STREAM_FROM:
                # The backend writes each chunk while the next is validated (otpagent.bulk_intake).
                results = streamed.enqueue_stream(chunks, now)
            else:
                for _ in chunks:  # validate the whole batch into ``items``
                    pass
                results = self.storage.enqueue(items, now)
        except IdempotencyConflict as exc:
            raise InvalidRequest.single("idempotency_key", str(exc), exc.index if len(requests) > 1 else None) from None
        if self.bus.wants("queued"):
            self.bus.publish([queued_event(i.message, now) for i, r in zip(items, results, strict=True)
                              if r.created])
        self.notify_workers()
        return [r.message_id for r in results]

    def load_messages_from_json(self, path: str | os.PathLike[str], *, load_id: str | None = None) -> int:
        """Queue every message of a JSON file, all or nothing; returns how many rows are queued.

        The file is validated whole, then queued in one transaction, OTP rows issued as codes in
        the same transaction; running the same file again queues nothing twice (each row's
        idempotency key derives from the file's digest, or from ``load_id``). See
        :mod:`otpagent.loading`.
        """
        from otpagent.loading import load_file

        with self.tracing.enqueue("load_messages_from_json") as span:
            ids = load_file(self, path, load_id).message_ids
            span.record(ids)
            return len(ids)

    def send_otp(
        self, phone_number: str | None = None, *, email: str | None = None, user_id: str | None = None,
        channels: Sequence[str] | None = None, purpose: str = "login", priority: Priority | str = Priority.HIGH,
        preferred_channel: str | None = None, callback_url: str | None = None, ttl_seconds: float | None = None,
        locale: str | None = None, buckets: Sequence[Bucket] = (),
    ) -> str:
        """Issue a new code for the recipient and queue it; returns the message id.

        Raises :class:`RateLimited` during the resend cooldown or over the hourly cap,
        :class:`InvalidRequest` for a bad recipient or a country outside the allow-list, and
        :class:`~otpagent.errors.OtpHeld` when the fraud guard holds the number's prefix.

        ``buckets``: your own rate limits for this request, ``(key, interval, burst)`` GCRA
        buckets in the storage (one token per ``interval`` seconds, ``burst`` at most), taken
        one token each, all or none, by the same storage write that issues the code (so a
        request waits for one commit). When any is empty nothing is issued and
        :class:`~otpagent.errors.LimitsRefused` (a :class:`RateLimited`) names the bucket with
        the longest wait; requests refused earlier (bad input, the fraud guard) take nothing.
        """
        otp = self.otp_policy()
        cfg = self.config.otp
        buckets = checked_buckets(buckets) if buckets else []
        request = parse_request({
            "phone_number": phone_number, "email": email, "user_id": user_id, "channels": channels,
            "message_type": "otp", "priority": priority, "preferred_channel": preferred_channel,
            "callback_url": callback_url, "metadata": {"purpose": purpose, **({"locale": locale} if locale else {})},
        })
        now = self.clock()
        with self.tracing.enqueue("send_otp") as span:
            issue = self.prepare_otp(request, now=now, purpose=purpose, ttl_seconds=ttl_seconds, locale=locale)
            store_issue = functools.partial(otp.store.issue_otp, issue.otp, issue.message,
                                            cooldown_seconds=cfg.resend_cooldown_seconds,
                                            max_per_hour=cfg.max_per_hour, now=now)
            # Passed only when given, so a storage plugin that predates ``buckets`` still serves the rest.
            outcome, wait = store_issue(buckets=buckets) if buckets else store_issue()
            if outcome is OtpIssueOutcome.COOLDOWN:
                raise RateLimited("resend cooldown", wait)
            if outcome is OtpIssueOutcome.HOURLY_LIMIT:
                raise RateLimited("too many codes this hour", wait)
            span.record(issue.message.message.id)
        self.announce_queued([issue.message.message])
        return issue.message.message.id

    def prepare_otp(self, request: MessageRequest, *, now: float, purpose: str, ttl_seconds: float | None = None,
                    locale: str | None = None) -> OtpIssue:
        """A new code for ``request``'s recipient, ready to issue: admitted by the abuse rules,
        routable (with the clear code, which counts towards the length), its message sealed.
        Raises :class:`InvalidRequest`, :class:`RateLimited` or :class:`OtpHeld` (the fraud
        guard holds the number's prefix); writes nothing."""
        otp = self.otp_policy()
        cfg = self.config.otp
        ttl = min(float(ttl_seconds or cfg.ttl_seconds), 600.0)
        otp.admit(request.phone_number, now)
        if self.fraud_guard is not None:
            self.fraud_guard.check(request.phone_number, now)
        minutes = max(1, round(ttl / 60))
        body = cfg.template_for(locale).replace("{minutes}", str(minutes))
        code = generate_code(cfg.length)
        item = to_new_message(request, now=now, body=body, secret=code, expires_at=now + ttl,
                              message_id=new_message_id())
        errors = self.routability(item, None)
        if errors:
            raise InvalidRequest(errors)
        # Stored sealed: the clear code lives only in memory, now and just before each send.
        item = attrs.evolve(item, message=message_with(item.message, secret=otp.sealer.seal(item.message.id, code)))
        recipient = request.phone_number or (request.email or "").lower()
        record = OtpRecord(id=item.message.id, recipient=recipient, purpose=purpose,
                           code_hash=otp.code_hash(recipient, purpose, code), created_at=now,
                           expires_at=now + ttl, message_id=item.message.id)
        return OtpIssue(otp=record, message=item)

    def announce_queued(self, messages: Sequence[Message]) -> None:
        """Publish the ``queued`` events of messages just stored and wake the workers; OTPs
        among them count as sent for the fraud guard."""
        now = self.clock()
        if self.fraud_guard is not None:
            for message in messages:
                if message.message_type is MessageType.OTP:
                    self.fraud_guard.record_sent(message.phone_number, now)
        if self.bus.wants("queued"):
            self.bus.publish([queued_event(m, now) for m in messages])
        self.notify_workers()

    def verify_otp(self, recipient: str, code: str, *, purpose: str = "login",
                   buckets: Sequence[Bucket] = ()) -> tuple[bool, str]:
        """``(True, "verified")`` once for the right code; otherwise ``(False, reason)`` where
        reason is ``invalid`` (also for a number without a live code), ``expired`` (the right
        code, too late) or ``too_many_attempts`` (this wrong guess used up the code's
        ``otp.max_attempts``: the code is dead, a new one must be sent).

        Raises :class:`RateLimited`, without checking the code, while failed verifications
        across the fleet exceed ``otp.global_failures_per_minute``, and
        :class:`~otpagent.errors.LimitsRefused` when ``buckets`` (as in :meth:`send_otp`, taken
        by the same write as the check) had no token.
        """
        for field, value, limit in (("recipient", recipient, 320), ("code", code, 32), ("purpose", purpose, 64)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest.single(field, f"must be a non-empty string, got {type(value).__name__}")
            fields.text(field, value, limit=limit)
        checked = checked_buckets(buckets) if buckets else []
        now = self.clock()
        ok, reason = self.otp_policy().verify(recipient, purpose, code, now, checked)
        if ok and self.fraud_guard is not None:
            self.fraud_guard.record_verified(normalise_recipient(recipient), now)
        self.bus.publish([Event(type="otp_verified" if ok else "otp_rejected", message_id=None,
                                data={"reason": reason, "purpose": purpose})])
        return ok, reason

    def fraud_status(self) -> list[PrefixStatus]:
        """Every prefix and country the fraud guard tracks (held first) with its window's counts."""
        return self._fraud().status(self.clock())

    def release_prefix(self, prefix: str) -> bool:
        """Release a prefix the fraud guard holds (``+447700``), the override for a false alarm:
        codes flow at once and the guard leaves it alone for ``otp.fraud_guard.release_grace_seconds``.
        Returns whether it was held. To never hold a prefix or country, list it in
        ``otp.fraud_guard.allow``."""
        return self._fraud().release(prefix, self.clock())

    def _fraud(self) -> FraudGuard:
        if self.fraud_guard is None:
            raise ConfigError("otp.fraud_guard.enabled", "the fraud guard is off in this configuration "
                                                         "(or otp.enabled is false)")
        return self.fraud_guard

    def otp_policy(self) -> OtpPolicy:
        """The OTP policy, or a ConfigError naming ``otp.enabled`` when OTPs are turned off."""
        if self.otp is None:
            raise ConfigError("otp.enabled", "OTPs are turned off in this configuration (otp.enabled is false), "
                                             "so codes can be neither sent nor verified")
        return self.otp

    def cancel_message(self, message_id: str) -> bool:
        """Cancel a message that has not been handed to a provider yet."""
        now = self.clock()
        update = MessageUpdate(message_id=message_id, status=Status.CANCELLED, clear_secret=True,
                               expected_statuses=frozenset({Status.QUEUED, Status.SCHEDULED, Status.RETRYING}))
        event = Event(type="cancelled", message_id=message_id, at=now)
        applied = self.storage.update_message(update, now, events=[event])
        if applied:
            self.bus.publish([event])
        return applied

    def routability(self, item: NewMessage, index: int | None) -> list[FieldError]:
        """Why no configured channel could carry ``item`` (empty when one can), naming the field."""
        envelope = item.message.envelope()
        if self.planner.any_usable(item.message, envelope, check_circuits=False):
            return []
        refusals = self.planner.refusals(item.message, envelope, check_circuits=False)
        unknown = [c for c in item.message.channels or () if c not in self.channels]
        if unknown:
            return [FieldError("channels", f"unknown channel(s) {', '.join(unknown)} "
                                           f"(configured: {', '.join(self.channels)})", index)]
        # Name the field at fault: the content when a channel's check refused it, else the
        # request's channel list, else the recipient the channels could not reach.
        content = {n: r for n, r in refusals.items() if r.field == "content"}
        recipients = [r.field for r in refusals.values() if r.field in ("phone_number", "email")]
        field = "content" if content else "channels" if item.message.channels else \
            max(set(recipients), key=recipients.count, default="phone_number")
        detail = "; ".join(f"{n}: {r.reason}" for n, r in (content or refusals).items())
        return [FieldError(field, f"no configured channel can deliver it ({detail})", index)]

    # -- reports -------------------------------------------------------------------------------
    def get_delivery_report(self, message_id: str) -> DeliveryReport | None:
        """Status, channel, every attempt, the event history and cost of one message."""
        m = self.storage.get_message(message_id)
        if m is None:
            return None
        return DeliveryReport(
            message_id=m.id, status=m.status, channel=m.channel, recipient=m.recipient,
            message_type=m.message_type, priority=m.priority, body=mask_code(m.body),
            attempt_log=tuple(self.storage.get_attempts(m.id)), history=tuple(self.storage.get_events(m.id)),
            cost=m.cost, created_at=to_datetime(m.created_at), updated_at=to_datetime(m.updated_at),  # type: ignore[arg-type]
            scheduled_for=to_datetime(m.due_at) if m.due_at > m.created_at + 0.001 else None,
            provider_message_id=m.provider_message_id, last_error=m.last_error or None, route=m.route,
        )

    def get_metrics(self) -> dict[str, Any]:
        """Queue size, success rate, per-channel performance and circuit state, runtime counters."""
        return collect_metrics(self)

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """Block until no message is queued, retrying or in flight and no scheduled message is
        due (or ``timeout``); for tests, demos and scripts. Returns whether that was reached.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.capabilities.housekeeping.stats(self.clock())
            busy = sum(stats.by_status.get(s, 0) for s in ("queued", "retrying", "sending"))
            inflight = self._dispatcher.inflight if self._dispatcher is not None else 0
            if inflight == 0 and busy == 0 and stats.oldest_due_age_seconds is None:
                return True
            time.sleep(0.02)
        return False

    # -- provider callbacks --------------------------------------------------------------------
    def record_provider_event(self, event: ProviderEvent) -> ProviderEventResult:
        """Apply a provider's status report, idempotently and in order, in one transaction.

        A status may only move a message forward (a late ``sent`` never overwrites
        ``delivered``); ``undelivered``/``failed`` for the message's current attempt sends it on
        to the next channel of its route, or ends it when there is none. A repeated event id is
        a REPLAY; if the write fails, nothing is remembered and the provider's retry applies it.
        """
        with self.tracing.provider_callback(event, functools.partial(self._message_by_provider_id,
                                                                     event.provider_message_id)) as span:
            result = record_provider_event(self, event)
            span.record(result)
            return result

    def _message_by_provider_id(self, provider_message_id: str) -> Message | None:
        attempt = self.storage.find_by_provider_id(provider_message_id)
        return self.storage.get_message(attempt.message_id) if attempt is not None else None


def _load(config: ConfigSource) -> AgentConfig:
    if isinstance(config, AgentConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config, base_dir=Path.cwd())
    if config is None or isinstance(config, str | os.PathLike):
        return load_config(config)
    raise ConfigError("", f"config must be a path, a mapping or None, got {type(config).__name__}")

