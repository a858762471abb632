"""``GET /metrics`` in the Prometheus text format.

Most figures are read at scrape time from storage (shared by every worker of a fleet, so any
replica reports the same totals): queue depth, messages by status, attempts by channel and
outcome, deliveries, cost, circuit state. Attempt latency is a histogram fed by this process's
event bus (the ``attempt`` events of its own workers), which is what a histogram can honestly
describe. Each app has its own registry, so several apps can live in one process (tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from otpagent.model import Event
from otpagent.server.service import service_of

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from otpagent.agent import IntelligentOTPAgent

__all__ = ["AttemptLatencyTap", "StorageCollector", "build_registry", "prometheus_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AttemptLatencyTap:
    """An event sink that feeds the attempt-latency histogram (never blocks: it only observes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram("otpagent_attempt_latency_seconds", "Provider call latency per attempt",
                                   ["channel", "outcome"], registry=registry, buckets=_BUCKETS)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if event.type != "attempt":
            return
        latency = event.data.get("latency_ms")
        if isinstance(latency, int | float):
            self.histogram.labels(str(event.data.get("channel", "")), str(event.data.get("outcome", ""))).observe(
                latency / 1000.0)

    def close(self) -> None:
        """Nothing to release."""


class StorageCollector(Collector):
    """Reads ``agent.get_metrics()`` at scrape time."""

    def __init__(self, agent: IntelligentOTPAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        m = self.agent.get_metrics()
        yield GaugeMetricFamily("otpagent_queue_depth", "Messages waiting or in flight", value=m["queue_size"])
        by_status = GaugeMetricFamily("otpagent_messages", "Stored messages by status", labels=["status"])
        for status, count in sorted(m["database_stats"]["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status
        attempts = CounterMetricFamily("otpagent_channel_attempts", "Attempts by channel and outcome",
                                       labels=["channel", "outcome"])
        deliveries = CounterMetricFamily("otpagent_channel_deliveries", "Provider-confirmed deliveries",
                                         labels=["channel", "status"])
        cost = CounterMetricFamily("otpagent_channel_cost", "Cost of accepted sends", labels=["channel"])
        circuit = GaugeMetricFamily("otpagent_channel_circuit_open", "1 while the channel's circuit is open",
                                    labels=["channel"])
        p95 = GaugeMetricFamily("otpagent_channel_latency_p95_seconds", "p95 attempt latency (last 1000)",
                                labels=["channel"])
        for name, c in sorted(m["channels"].items()):
            attempts.add_metric([name, "accepted"], c["sent"])
            attempts.add_metric([name, "transient"], c["transient_failures"])
            attempts.add_metric([name, "permanent"], c["permanent_failures"])
            deliveries.add_metric([name, "delivered"], c["delivered"])
            undelivered = c["failed"] - c["transient_failures"] - c["permanent_failures"]
            deliveries.add_metric([name, "undelivered"], undelivered)
            cost.add_metric([name], c["cost"])
            circuit.add_metric([name], 1.0 if c["circuit"] == "open" else 0.0)
            if c["p95_latency_ms"] is not None:
                p95.add_metric([name], c["p95_latency_ms"] / 1000.0)
        yield from (attempts, deliveries, cost, circuit, p95)
        runtime = CounterMetricFamily("otpagent_worker_events", "This process's dispatcher counters",
                                      labels=["event"])
        for key in ("total_sent", "total_failed", "total_expired", "retries", "fallbacks", "channel_faults",
                    "abandoned_calls"):
            runtime.add_metric([key.removeprefix("total_")], m["runtime_metrics"][key])
        yield runtime
        yield GaugeMetricFamily("otpagent_inflight", "Sends in flight in this process",
                                value=m["runtime_metrics"]["inflight"])
        yield GaugeMetricFamily("otpagent_events_dropped", "Events the bus dropped (sinks too slow)",
                                value=m["runtime_metrics"]["events_dropped"])


def build_registry(agent: IntelligentOTPAgent) -> tuple[CollectorRegistry, AttemptLatencyTap]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(agent))
    return registry, AttemptLatencyTap(registry)


async def prometheus_metrics(request: Request) -> Response:
    """GET /metrics."""
    service = service_of(request)
    service.require_key_unless(service.settings.public_metrics, request)
    body = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE)
