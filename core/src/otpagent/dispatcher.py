"""The dispatcher: claim -> route -> rate-limit -> send -> record, on a pool of worker threads.

One claimer thread leases only as many due messages as there are idle workers, so a message
of higher priority enqueued a moment later is not stuck behind a local backlog. Each worker
sends one message and records the outcome in one transaction (the attempt row, the new state
and its events), conditioned on still holding the lease. Where the backend records outcomes in
batches (``BatchUpdates``), the worker hands the outcome to one writer thread and goes on
(:mod:`otpagent.outcomewriter`); the message stays leased until it is written.

Leases are short and renewed by a heartbeat (:mod:`otpagent.heartbeat`), so a dead worker's
messages go out again within seconds. No plugin can wedge a message: a channel that raises,
returns something other than a ``SendResult`` or overruns its timeout is a transient failure
of that channel (:mod:`otpagent.channelguard`); an overrunning call is abandoned and its
thread replaced (:mod:`otpagent.workerpool`); a broken strategy falls back to the priority
order (:mod:`otpagent.routing.guard`).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from otpagent.backoff import backoff_delay
from otpagent.channelguard import ChannelGuard
from otpagent.channelpace import MAX_RESERVE, ChannelPace
from otpagent.circuit import CircuitBreakers
from otpagent.config import AgentConfig, ChannelConfig
from otpagent.events import EventBus
from otpagent.fleet import FleetRoster
from otpagent.heartbeat import LeaseHeartbeat, LeaseKeeper, ReclaimGate
from otpagent.logs import get_logger
from otpagent.model import (
    Attempt,
    Event,
    FailureScope,
    Message,
    Outcome,
    SendResult,
    Status,
    message_with,
)
from otpagent.onward import route_onward
from otpagent.otp_seal import CodeSealer, UnreadableCode
from otpagent.outcomewriter import OutcomeWriter
from otpagent.protocols import Channel, MessageUpdate, MessageWrite, RouteOutcome, RoutingStrategy, StorageBackend
from otpagent.routing.planner import RoutePlanner, Unroutable
from otpagent.storage.capabilities import AgentCapabilities
from otpagent.tracing import NO_TRACING, Tracing
from otpagent.upkeep import upkeep_loop
from otpagent.workerid import new_worker_id
from otpagent.workerpool import WorkerPool

if TYPE_CHECKING:
    from otpagent.tracing_otel import Claim

__all__ = ["Dispatcher"]

log = get_logger("otpagent.dispatcher")

#: Under load (workers busy), how long the claimer waits for half of them to be free
#: before claiming: one claim for several messages instead of one per finished send, at the
#: price of at most this delay for work that arrives while every worker is busy anyway.
CLAIM_GATHER_SECONDS = 0.003


class Dispatcher:
    """Works the queue until stopped. Thread-safe; one per agent.

    ``plugin_labels`` maps a channel name to the label of the plugin that provides it (its
    distribution and version, e.g. ``"acme-sms 1.0.2"``), used in errors and logs; a channel
    without one is named by its configured plugin.
    """

    def __init__(
        self, *, config: AgentConfig, storage: StorageBackend, capabilities: AgentCapabilities,
        channels: Mapping[str, Channel],
        channel_configs: Mapping[str, ChannelConfig], planner: RoutePlanner, strategy: RoutingStrategy,
        breakers: CircuitBreakers, bus: EventBus, clock: Callable[[], float] = time.time, worker_id: str = "",
        plugin_labels: Mapping[str, str] | None = None, codes: CodeSealer | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.storage = storage
        self.capabilities = capabilities
        self.channels = channels
        self.channel_configs = channel_configs
        self.planner = planner
        self.strategy = strategy
        self.breakers = breakers
        self.bus = bus
        self.clock = clock
        #: Opens the sealed OTP code a message carries, just before it is sent (None: OTPs are off).
        self.codes = codes
        #: Spans of each step (:mod:`otpagent.tracing`; no-ops when tracing is off).
        self.tracing = tracing
        self.worker_id = worker_id or new_worker_id()
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool: WorkerPool | None = None
        self._heartbeat: LeaseHeartbeat | None = None
        self._claimer: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None
        self._writer: OutcomeWriter | None = None
        self.counters: dict[str, int] = {"sent": 0, "failed": 0, "retried": 0, "fallbacks": 0, "expired": 0,
                                         "channel_faults": 0, "abandoned_calls": 0}
        self.pace = ChannelPace(capabilities.shared_state, capabilities.rate_limits, channel_configs)
        self._counter_lock = threading.Lock()
        cfg = config.dispatcher
        self.guard = ChannelGuard(configs=channel_configs, labels=plugin_labels, timeout=cfg.channel_timeout_seconds,
                                  grace=cfg.channel_timeout_grace_seconds, count=self.count, clock=clock)
        self.leases = LeaseKeeper(storage, self.worker_id, config.dispatcher.lease_seconds)
        self.reclaim_gate = ReclaimGate(config.dispatcher.lease_seconds, gap=config.dispatcher.lease_seconds / 2)
        #: This worker's entry in the fleet's roster of live workers (see :mod:`otpagent.fleet`).
        self.roster = FleetRoster(capabilities.shared_state, self.worker_id, threads=cfg.workers)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._claimer is not None and self._claimer.is_alive()

    @property
    def inflight(self) -> int:
        """Messages in hand: being sent, or sent with their outcome not yet written."""
        pool, writer = self._pool, self._writer
        return (pool.busy if pool is not None else 0) + (writer.pending if writer is not None else 0)

    @property
    def threads_running(self) -> int:
        """Threads running this process's send slots now (4, more while a provider holds them)."""
        pool = self._pool
        return pool.live_workers if pool is not None else 0

    @property
    def outcomes_unwritten(self) -> int:
        """Outcomes handed to the outcome writer and not yet written (growing: the store lags)."""
        writer = self._writer
        return writer.pending if writer is not None else 0

    @property
    def pool(self) -> WorkerPool | None:
        """The worker threads while running (live and abandoned counts for metrics and tests)."""
        return self._pool

    def start(self) -> None:
        if self.running:
            return
        cfg = self.config.dispatcher
        self._stopping.clear()
        self._pool = WorkerPool(cfg.workers, name="otpagent-worker",
                                tick=max(0.01, min(1.0, cfg.channel_timeout_grace_seconds / 2)))
        self._pool.start()
        if self.capabilities.batch_updates is not None:
            self._writer = OutcomeWriter(self.capabilities.batch_updates, limit=2 * cfg.workers, on_lost=self._lost)
            self._writer.start()
        pool = self._pool
        self._heartbeat = LeaseHeartbeat(self._renew_leases, lease_seconds=cfg.lease_seconds,
                                         interval=cfg.heartbeat_interval, clock=self.clock,
                                         holding=lambda: self.inflight > 0 or self.leases.has_orphans,
                                         worker_id=self.worker_id)
        self._heartbeat.start()
        self._claimer = threading.Thread(target=self._claim_loop, args=(pool,), name="otpagent-claimer", daemon=True)
        self._housekeeper = threading.Thread(
            target=upkeep_loop, name="otpagent-housekeeper", daemon=True,
            kwargs={"capabilities": self.capabilities, "cleanup": self.config.cleanup, "roster": self.roster,
                    "clock": self.clock, "stopping": self._stopping})
        self._claimer.start()
        self._housekeeper.start()
        try:
            self.roster.join(self.clock())
        except Exception:  # the store may be away: the housekeeper says so again in 5 s
            log.exception("roster_join_failed", worker_id=self.worker_id)
        log.info("dispatcher_started", worker_id=self.worker_id, workers=cfg.workers, lease_seconds=cfg.lease_seconds)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let in-flight sends finish and be recorded, then return.

        A send that hangs is abandoned at its deadline (channel timeout + grace) as usual, so
        this never waits for a stuck plugin call longer than that.
        """
        self._stopping.set()
        self._wake.set()
        for thread in (self._claimer, self._housekeeper):
            if thread is not None:
                thread.join(timeout)
        if self._pool is not None and not self._pool.stop(timeout):
            log.warning("dispatcher_stopped_with_work_left", worker_id=self.worker_id, tasks=self._pool.busy)
        if self._writer is not None and not self._writer.stop(timeout):  # after the pool: its last outcomes
            log.warning("dispatcher_stopped_with_outcomes_unwritten", worker_id=self.worker_id,
                        outcomes=self._writer.pending)
        if self._heartbeat is not None:  # after the pool and the writer: in-flight sends keep their leases
            self._heartbeat.stop()
        if self._claimer is not None:
            try:
                self.roster.leave(self.clock())
            except Exception:  # our presence then lapses on its own
                log.exception("roster_leave_failed", worker_id=self.worker_id)
        self._claimer = self._housekeeper = None
        self._pool = None
        self._writer = None
        self._heartbeat = None
        log.info("dispatcher_stopped", worker_id=self.worker_id)

    def notify(self) -> None:
        """Wake the claimer: something was just enqueued in this process."""
        self._wake.set()

    # -- claiming ------------------------------------------------------------------------------
    def _claim_loop(self, pool: WorkerPool) -> None:
        cfg = self.config.dispatcher
        # Idle, look again at least once a heartbeat: another worker's lease may expire at any
        # time, and nothing wakes us for that (PostgreSQL's NOTIFY fires only on enqueue).
        idle_wait = min(cfg.poll_interval_seconds, cfg.heartbeat_interval)
        wakeup = self.capabilities.wakeup
        while not self._stopping.is_set():
            free = pool.reserve(idle_wait, want=max(1, cfg.workers // 2), gather=CLAIM_GATHER_SECONDS)
            if not free:
                continue
            try:
                self._wake.clear()
                started, started_ns = time.monotonic(), time.time_ns()
                messages = self.storage.claim_due(self.worker_id, free, cfg.lease_seconds, self.clock(),
                                                  reclaim=self.reclaim_gate.may_reclaim(started))
                self.reclaim_gate.contact(started, time.monotonic())
                claim = self.tracing.claimed(started_ns, time.time_ns(), len(messages), self.worker_id) \
                    if messages else None
            except Exception:
                log.exception("claim_failed", worker_id=self.worker_id)
                messages, claim = [], None
                self._stopping.wait(min(1.0, idle_wait * 5))
            pool.unreserve(free - len(messages))
            for message in messages:
                pool.submit(functools.partial(self._work, message, claim))
            # With a wake-up, fewer than asked for means nothing else was due when the claim
            # looked (the capability's promise): the next claim waits for news of more (marked
            # before this claim) rather than looking again at once and finding nothing, once
            # for every message of a trickle.
            if (len(messages) < free) if wakeup is not None else not messages:
                if wakeup is not None and not self._wake.is_set():
                    wakeup.wait_for_work(idle_wait)
                else:
                    self._wake.wait(idle_wait)

    def _renew_leases(self, now: float) -> int:
        started = time.monotonic()
        renewed = self.leases.renew(now)
        self.reclaim_gate.contact(started, time.monotonic())
        return renewed

    def _work(self, message: Message, claim: Claim | None = None) -> None:
        try:
            with self.tracing.process(message, claim):
                self.process(message)
        except Exception as exc:
            log.exception("dispatch_failed", message_id=message.id)
            self.leases.orphan(message.id, exc)
        finally:
            self._wake.set()

    # -- one message ---------------------------------------------------------------------------
    def process(self, message: Message) -> None:
        """Take one leased message one step forward (send, retry later, fall back or end)."""
        now = self.clock()
        prepared = self._prepared(message, now)
        if prepared is None:
            return
        target = self._channel_for(prepared, now)
        if target is not None:
            self._send(prepared, target[0], target[1], now)

    def _prepared(self, message: Message, now: float) -> Message | None:
        """The message ready to send (code opened, route planned), or None when it ended here."""
        if message.expires_at is not None and now >= message.expires_at:
            self._finish(message, Status.EXPIRED, "expired before it could be delivered", now)
            return None
        if message.secret is not None:
            # The OTP code is stored sealed: opened here, in memory only, for this step's send.
            try:
                message = _with_code(message, self.codes)
            except UnreadableCode as exc:
                self._finish(message, Status.FAILED, str(exc), now)
                return None
        if not message.route:
            route = self.tracing.plan(self.planner, message)
            if isinstance(route, Unroutable):
                self._finish(message, Status.FAILED, str(route), now)
                return None
            # The route is stored with this step's outcome (see _update), not in a write of its
            # own: if the worker dies before that, the message is planned again when reclaimed.
            message = _with_route(message, tuple(route))
        return message

    def _channel_for(self, message: Message, now: float) -> tuple[str, Channel] | None:
        """The route's current channel when it may be used now; else the message falls back
        (or fails when the route is spent) and None."""
        channel_name = message.current_channel
        if channel_name is None:
            self._finish(message, Status.FAILED, message.last_error or "every channel failed", now)
            return None
        channel = self.channels.get(channel_name)
        why = self.planner.unavailable_reason(channel_name) if channel is not None else "no longer configured"
        if why is None and not self.breakers.allow(channel_name, now):
            why = "circuit open"
        if channel is None or why is not None:
            # Keep the failure that led here (e.g. the plugin fault that opened the circuit).
            earlier = f" (after: {message.last_error})" if message.last_error else ""
            self._fall_back(message, f"{channel_name}: {why}{earlier}", now, attempt=None)
            return None
        return channel_name, channel

    def _send(self, message: Message, channel_name: str, channel: Channel, now: float) -> None:
        wait = self.pace.wait_before_send(channel_name, now)
        if wait > MAX_RESERVE:
            self._update(message, MessageUpdate(message_id=message.id, status=Status.QUEUED, due_at=now + wait,
                                                expected_owner=self.worker_id), now)
            return
        # When the rate limiter let this send go (recorded with the attempt: what the limiter
        # promises, whatever the machine's load does to the moment the send really starts).
        slot = now + wait if self.channel_configs[channel_name].rate_limit is not None else None
        if wait > 0:
            time.sleep(wait)  # our reserved slot under the rate limit; the lease outlasts it
        started = self.clock()
        with self.tracing.provider_call(message, channel_name, channel.kind) as call:
            result = self.guard.send(channel, channel_name, message.envelope(), self._pool,
                                     functools.partial(self._record_abandoned, message, channel_name, started, slot))
            call.record(result)
        if result is not None:  # None: abandoned, the watchdog recorded the timeout
            self._record(message, channel_name, result, started, self.clock(), slot)

    def _record_abandoned(self, message: Message, channel_name: str, started: float, slot: float | None,
                          result: SendResult) -> None:
        """On the watchdog thread: record the timeout of a send that was abandoned."""
        try:
            self._record(message, channel_name, result, started, self.clock(), slot)
        except Exception as exc:
            log.exception("dispatch_failed", message_id=message.id)
            self.leases.orphan(message.id, exc)

    def _record(self, message: Message, channel_name: str, result: SendResult, started: float, finished: float,
                slot: float | None = None) -> None:
        number = message.attempt_count + 1
        cost = (result.cost if result.cost is not None else self.channel_configs[channel_name].cost or 0.0) \
            if result.ok else 0.0
        attempt = Attempt(
            message_id=message.id, number=number, channel=channel_name, outcome=result.outcome,
            started_at=started, finished_at=finished, provider_message_id=result.provider_message_id,
            error_code=result.code, error_message=result.reason, cost=cost,
        )
        attempt_event = Event(type="attempt", message_id=message.id, at=finished, data={
            "channel": channel_name, "number": number, "outcome": result.outcome.value,
            "error_code": result.code, "latency_ms": round((finished - started) * 1000, 3),
            **({"rate_limit_slot": round(slot, 6)} if slot is not None else {}),
        })
        now = finished
        self._observe(message, channel_name, result, finished - started, cost)
        self.breakers.record(channel_name, result.ok or (result.outcome is Outcome.PERMANENT
                                                          and result.scope is FailureScope.MESSAGE),
                             now, channel_fault=result.scope is FailureScope.CHANNEL and not result.ok,
                             reason=result.reason or "")
        if result.ok:
            update = MessageUpdate(
                message_id=message.id, status=Status.SENT, expected_owner=self.worker_id, channel=channel_name,
                provider_message_id=result.provider_message_id, attempt_count=number, add_cost=cost,
                channel_attempts=message.channel_attempts + 1, last_error="", route=message.route or None,
            )
            events = [attempt_event, Event(type="sent", message_id=message.id, at=now, data={
                "channel": channel_name, "provider_message_id": result.provider_message_id, "cost": cost})]
            self._update(message, update, now, attempt=attempt, events=events, counter="sent")
            return
        error = _error_text(channel_name, result)
        if result.outcome is Outcome.TRANSIENT:
            if result.retry_after:
                self.pace.pause(channel_name, now + result.retry_after, now)
            tries = message.channel_attempts + 1
            budget = (message.max_retries + 1) if message.max_retries is not None else self.config.retry.max_attempts
            if tries < budget:
                delay = backoff_delay(tries, self.config.retry.base_delay_seconds,
                                      self.config.retry.max_delay_seconds, self._rng)
                due = now + max(delay, result.retry_after or 0.0)
                if message.expires_at is None or due < message.expires_at:
                    update = MessageUpdate(
                        message_id=message.id, status=Status.RETRYING, expected_owner=self.worker_id,
                        due_at=due, channel_attempts=tries, attempt_count=number, last_error=error,
                    )
                    events = [attempt_event, Event(type="retrying", message_id=message.id, at=now,
                                                   data={"channel": channel_name, "retry_in": round(due - now, 3)})]
                    self._update(message, update, now, attempt=attempt, events=events, counter="retried")
                    return
        elif result.scope is FailureScope.CHANNEL:
            attempt_event = Event(type="attempt", message_id=message.id, at=finished,
                                  data={**attempt_event.data, "circuit": "opened"})
        self._fall_back(message, error, now, attempt=attempt, first_events=[attempt_event],
                        attempt_count=number)

    def _fall_back(self, message: Message, error: str, now: float, *, attempt: Attempt | None,
                   first_events: Sequence[Event] = (), attempt_count: int | None = None) -> None:
        """Move to the next usable channel of the route, or end the message (see :mod:`otpagent.onward`)."""
        template = MessageUpdate(message_id=message.id, status=Status.RETRYING, expected_owner=self.worker_id,
                                 attempt_count=attempt_count)
        step = route_onward(self.planner, message, error, now, template=template)
        # A fallback is due at once: the claimer is woken for it when it is written.
        self._update(message, step.update, now, attempt=attempt, events=[*first_events, *step.events],
                     counter=step.counter, wake=step.falls_back)

    def _finish(self, message: Message, status: Status, error: str, now: float, *, attempt: Attempt | None = None,
                first_events: Sequence[Event] = (), attempt_count: int | None = None) -> None:
        update = MessageUpdate(message_id=message.id, status=status, expected_owner=self.worker_id,
                               last_error=error, clear_secret=True, attempt_count=attempt_count)
        events = [*first_events, Event(type=status.value, message_id=message.id, at=now, data={"reason": error})]
        self._update(message, update, now, attempt=attempt, events=events,
                     counter="expired" if status is Status.EXPIRED else "failed")

    def _update(self, message: Message, update: MessageUpdate, now: float, *, attempt: Attempt | None = None,
                events: Sequence[Event] = (), counter: str | None = None, wake: bool = False) -> None:
        """Record this step's outcome: here and now, or through the outcome writer while it runs.
        Once applied, its events go to the sinks, ``counter`` moves and (``wake``) the claimer
        looks again; not applied means another worker holds the message now."""
        if update.route is None and message.route:
            update = attrs.evolve(update, route=message.route)
        self.tracing.events(events)  # on this thread: the message's span is current here
        done = functools.partial(self._recorded, message.id, events, counter, wake)
        writer = self._writer
        if writer is not None:  # once it is stopped, it writes a late outcome at once itself
            writer.submit(MessageWrite(update=update, now=now, attempt=attempt, events=events), done)
        else:
            done(self.storage.update_message(update, now, attempt=attempt, events=events))

    def _recorded(self, message_id: str, events: Sequence[Event], counter: str | None, wake: bool,
                  applied: bool) -> None:
        if not applied:
            log.warning("lease_lost", message_id=message_id, worker_id=self.worker_id)
            return
        self.bus.publish(events)
        if counter is not None:
            self.count(counter)
        if wake:
            self._wake.set()

    def _lost(self, message_id: str, exc: Exception) -> None:
        """On the outcome writer: an outcome that could not be written (as :meth:`_work` for a
        write that raised there): the message goes back to the queue one lease from now."""
        log.error("dispatch_failed", message_id=message_id, error=f"{type(exc).__name__}: {exc}")
        self.leases.orphan(message_id, exc)

    def _observe(self, message: Message, channel: str, result: SendResult, seconds: float, cost: float) -> None:
        status = Status.SENT if result.ok else Status.FAILED
        self.planner.observe(RouteOutcome(
            message_id=message.id, channel=channel, priority=message.priority, status=status,
            country=self.planner.outcome_country(message.phone_number), latency_ms=seconds * 1000.0, cost=cost,
        ))

    def count(self, key: str) -> None:
        """Add one to this process's counter ``key`` (``sent``, ``failed``, ``fallbacks``...)."""
        with self._counter_lock:
            self.counters[key] += 1


def _with_route(message: Message, route: tuple[str, ...]) -> Message:
    return message_with(message, route=route, route_index=0)


def _with_code(message: Message, codes: CodeSealer | None) -> Message:
    """``message`` with its OTP code opened (never written back: updates only clear it)."""
    if codes is None:
        raise UnreadableCode("the message carries an OTP code but OTPs are turned off (otp.enabled is false), "
                             "so the code cannot be opened; it was not sent")
    return message_with(message, secret=codes.open(message.id, message.secret or ""))


def _error_text(channel_name: str, result: SendResult) -> str:
    """The message's ``last_error`` for a failed send (guard-rail reasons name the channel)."""
    reason = result.reason or "failed"
    text = reason if reason.startswith(f"channel {channel_name} (") else f"{channel_name}: {reason}"
    return text + (f" [{result.code}]" if result.code else "")

