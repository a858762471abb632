"""``GET /metrics`` in the Prometheus text format: the fleet's figures, and this process's.

Two kinds of figures, named so nobody mistakes one for the other:

- **The fleet's**, read at scrape time from storage (shared by every worker, so every replica
  reports the same values): gauges. Counts over a sliding window are gauges *named for their
  window* (``otpagent_channel_attempts_24h``, ``otpagent_message_events_5m``): they go down as
  old attempts leave the window, so they are read as they are, never through ``rate()``.
- **This process's**: true counters that only ever grow while the process lives (the
  attempt-latency histogram fed by this process's ``attempt`` events, the dispatcher's
  counters), each labelled ``process`` with this process's worker id. Several processes
  behind one port (``--processes``) answer scrapes in turn; the label keeps their series apart,
  so ``rate()`` over them is right and a restart is a new series, not a reset.

Each app has its own registry, so several apps can live in one process (tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from otpagent.model import Event
from otpagent.protocols import AttemptTally
from otpagent.server.service import service_of

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from otpagent.agent import IntelligentOTPAgent

__all__ = ["SHORT_WINDOW_SECONDS", "AttemptLatencyTap", "ProcessCollector", "StorageCollector", "build_registry",
           "prometheus_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The short window (``_5m`` gauges): recent enough to alert on.
SHORT_WINDOW_SECONDS = 300.0
#: Message events exported per window, by event type.
_EVENT_TYPES = ("queued", "scheduled", "sent", "delivered", "undelivered", "retrying", "fallback", "failed",
                "expired", "cancelled")


class AttemptLatencyTap:
    """An event sink that feeds the attempt-latency histogram (never blocks: it only observes)."""

    #: Only attempts: the bus then neither builds nor queues the other events for it.
    event_types = frozenset({"attempt"})

    def __init__(self, registry: CollectorRegistry, process: str) -> None:
        self.process = process
        self.histogram = Histogram("otpagent_attempt_latency_seconds",
                                   "Provider call latency per attempt, observed by this process",
                                   ["channel", "outcome", "process"], registry=registry, buckets=_BUCKETS)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if event.type != "attempt":
            return
        latency = event.data.get("latency_ms")
        if isinstance(latency, int | float):
            self.histogram.labels(str(event.data.get("channel", "")), str(event.data.get("outcome", "")),
                                  self.process).observe(latency / 1000.0)

    def close(self) -> None:
        """Nothing to release."""


def _gauge(name: str, documentation: str, labels: list[str] | None = None, value: float | None = None) -> Any:
    return GaugeMetricFamily(name, documentation, labels=labels, value=value)


class StorageCollector(Collector):
    """The fleet's figures, read from storage at scrape time (``get_metrics()`` plus the short
    window's activity)."""

    def __init__(self, agent: IntelligentOTPAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        m = agent.get_metrics()
        now = agent.clock()
        housekeeping = agent.capabilities.housekeeping
        recent_events = housekeeping.event_counts(now - SHORT_WINDOW_SECONDS, now)
        recent_attempts = housekeeping.attempt_counts(now - SHORT_WINDOW_SECONDS, now)
        yield _gauge("otpagent_queue_depth", "Messages waiting or in flight (fleet)", value=m["queue_size"])
        yield _gauge("otpagent_queue_oldest_due_age_seconds",
                     "How long the oldest due message has waited to be claimed (0 when none is due)",
                     value=m["oldest_due_age_seconds"] or 0.0)
        by_status = _gauge("otpagent_messages", "Stored messages by status", ["status"])
        for status, count in sorted(m["database_stats"]["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status
        yield _gauge("otpagent_workers_live", "Live worker processes of the fleet (roster in storage)",
                     value=m["workers"]["live"])
        yield _gauge("otpagent_worker_threads_live", "Send slots (dispatcher.workers) of the live worker processes",
                     value=m["workers"]["threads"])
        yield from _message_events(m["last_24h"]["messages"], recent_events)
        yield from _channel_windows(m["channels"], recent_attempts)
        yield from _channel_state(m["channels"])


def _message_events(day: Mapping[str, int], recent: Mapping[str, int]) -> Iterator[Metric]:
    keys = {"retrying": "retries", "fallback": "fallbacks"}
    for suffix, counts in (("24h", {t: day[keys.get(t, t)] for t in _EVENT_TYPES}),
                           ("5m", {t: int(recent.get(t, 0)) for t in _EVENT_TYPES})):
        family = _gauge(f"otpagent_message_events_{suffix}",
                        f"Message events of the last {suffix} by type, fleet-wide (from the events table)", ["type"])
        for event_type, count in counts.items():
            family.add_metric([event_type], count)
        yield family


def _channel_windows(channels: Mapping[str, Mapping[str, Any]], recent: Mapping[str, AttemptTally]) -> Iterator[Metric]:
    """Attempts by outcome and provider-reported deliveries per channel, over 24 h and 5 min."""
    for suffix in ("24h", "5m"):
        attempts = _gauge(f"otpagent_channel_attempts_{suffix}",
                          f"Attempts of the last {suffix} by channel and outcome, fleet-wide", ["channel", "outcome"])
        deliveries = _gauge(f"otpagent_channel_deliveries_{suffix}",
                            f"Accepted attempts of the last {suffix} a provider confirmed or refused",
                            ["channel", "status"])
        for name, c in sorted(channels.items()):
            if suffix == "24h":
                figures = {"accepted": c["sent"], "transient": c["transient_failures"],
                           "permanent": c["permanent_failures"], "delivered": c["delivered"],
                           "undelivered": c["undelivered"]}
            else:
                tally = recent.get(name)
                figures = {k: getattr(tally, k) if tally is not None else 0
                           for k in ("accepted", "transient", "permanent", "delivered", "undelivered")}
            for outcome in ("accepted", "transient", "permanent"):
                attempts.add_metric([name, outcome], figures[outcome])
            for status in ("delivered", "undelivered"):
                deliveries.add_metric([name, status], figures[status])
        yield attempts
        yield deliveries


def _channel_state(channels: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    cost = _gauge("otpagent_channel_cost_24h", "Cost of accepted attempts of the last 24 h", ["channel"])
    spend = _gauge("otpagent_channel_daily_spend", "Spend of the current UTC day", ["channel"])
    budget = _gauge("otpagent_channel_daily_budget", "Configured daily budget (channels with one)", ["channel"])
    circuit = _gauge("otpagent_channel_circuit_open", "1 while the channel's circuit is open (or half-open)",
                     ["channel"])
    enabled = _gauge("otpagent_channel_enabled", "1 when the channel is enabled in the config", ["channel"])
    p95 = _gauge("otpagent_channel_latency_p95_24h_seconds",
                 "p95 attempt latency over the last 24 h (latest 1000 attempts)", ["channel"])
    for name, c in sorted(channels.items()):
        cost.add_metric([name], c["cost"])
        spend.add_metric([name], c["daily_spend"])
        if c["daily_budget"] is not None:
            budget.add_metric([name], c["daily_budget"])
        circuit.add_metric([name], 0.0 if c["circuit"] == "closed" else 1.0)
        enabled.add_metric([name], 1.0 if c["enabled"] else 0.0)
        if c["p95_latency_ms"] is not None:
            p95.add_metric([name], c["p95_latency_ms"] / 1000.0)
    yield from (cost, spend, budget, circuit, enabled, p95)


class ProcessCollector(Collector):
    """This process's own figures, labelled with its worker id (``process``)."""

    def __init__(self, agent: IntelligentOTPAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        process = agent.dispatcher.worker_id
        counters = dict(agent.dispatcher.counters)
        events = CounterMetricFamily("otpagent_worker_events",
                                     "What this process's dispatcher did since the process started",
                                     labels=["event", "process"])
        for name, key in (("sent", "sent"), ("failed", "failed"), ("expired", "expired"), ("retries", "retried"),
                          ("fallbacks", "fallbacks"), ("channel_faults", "channel_faults"),
                          ("abandoned_calls", "abandoned_calls")):
            events.add_metric([name, process], counters[key])
        yield events
        dropped = CounterMetricFamily("otpagent_events_dropped", "Events this process's bus dropped (sinks too slow)",
                                      labels=["process"])
        dropped.add_metric([process], agent.bus.dropped)
        yield dropped
        inflight = _gauge("otpagent_inflight", "Messages in hand in this process: being sent, or sent with "
                          "their outcome not yet written", ["process"])
        inflight.add_metric([process], agent.dispatcher.inflight)
        yield inflight
        threads = _gauge("otpagent_worker_threads_running", "Threads running this process's send slots now (4, "
                         "more while a slow provider holds them)", ["process"])
        threads.add_metric([process], agent.dispatcher.threads_running)
        yield threads
        unwritten = _gauge("otpagent_outcomes_unwritten", "Outcomes this process's outcome writer has not "
                           "written yet (growing: the store cannot keep up)", ["process"])
        unwritten.add_metric([process], agent.dispatcher.outcomes_unwritten)
        yield unwritten
        working = _gauge("otpagent_process_working", "1 while this process's dispatcher works the queue",
                         ["process"])
        working.add_metric([process], 1.0 if agent.is_running else 0.0)
        yield working


def build_registry(agent: IntelligentOTPAgent) -> tuple[CollectorRegistry, AttemptLatencyTap]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(agent))
    registry.register(ProcessCollector(agent))
    return registry, AttemptLatencyTap(registry, agent.dispatcher.worker_id)


async def prometheus_metrics(request: Request) -> Response:
    """GET /metrics."""
    service = service_of(request)
    service.require_key_unless(service.settings.public_metrics, request)
    body = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE)
