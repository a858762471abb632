"""An API process reading ``serve``'s delivery process: its figures merged into ``/metrics`` (one
family per name, each process under its own label) and its state for ``/readyz``; and the
supervisor starting the child again. The delivery side runs in this process here (the same code
``otpagent run`` runs as serve's child); the child itself is driven in ``test_serve_command.py``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from otpagent.agent import IntelligentOTPAgent
from otpagent.server import delivery
from otpagent.server.delivery import DeliveryLink, DeliveryProcess, WithDelivery, export_process_metrics
from otpagent.server.prometheus import build_registry
from tests.conftest import wait_for


def test_the_delivery_process_figures_join_the_api_process_ones(
        make_agent: Callable[..., IntelligentOTPAgent], tmp_path: Path) -> None:
    worker, api = make_agent(), make_agent()
    port_file = tmp_path / "port"
    stop = export_process_metrics(worker, port_file)
    try:
        worker.start_processing()
        message_id = worker.send_message({"phone_number": "+447700900001", "content": "hi"})
        assert wait_for(lambda: worker.dispatcher.counters["sent"] == 1)
        link = DeliveryLink(port_file)
        registry, _tap = build_registry(api)

        text = generate_latest(WithDelivery(registry, link)).decode()
    finally:
        worker.stop_processing()
        stop()

    assert worker.storage.get_message(message_id) is not None
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert text.count("# TYPE otpagent_worker_events_total counter") == 1  # one family, both processes
    sent = {s.labels["process"]: s.value for s in families["otpagent_worker_events"].samples
            if s.name.endswith("_total") and s.labels["event"] == "sent"}
    assert sent == {api.dispatcher.worker_id: 0.0, worker.dispatcher.worker_id: 1.0}
    latency = [s for s in families["otpagent_attempt_latency_seconds"].samples if s.name.endswith("_count")]
    assert [s.labels["process"] for s in latency] == [worker.dispatcher.worker_id]
    assert "otpagent_queue_depth" in families  # the fleet's figures: the API process's own, once
    assert text.count("# TYPE otpagent_queue_depth gauge") == 1
    assert not link.alive() and link.families() == []  # stopped: the port is gone


def test_a_delivery_process_not_there_yet_is_not_alive_and_adds_nothing(tmp_path: Path) -> None:
    missing, garbled = DeliveryLink(tmp_path / "none"), DeliveryLink(tmp_path / "garbled")
    (tmp_path / "garbled").write_text("not a port")
    registry = CollectorRegistry()
    family = CounterMetricFamily("otpagent_worker_events", "x", labels=["event", "process"])
    family.add_metric(["sent", "api"], 2)
    registry.register(_Fixed([family]))

    assert not missing.alive() and not garbled.alive()
    assert missing.families() == [] and garbled.families() == []
    assert generate_latest(WithDelivery(registry, missing)) == generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[CounterMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[CounterMetricFamily]:
        return self.families


def test_the_supervisor_starts_the_child_again_after_it_ends_or_fails_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that ends unasked is started again, and a start that fails (no processes left)
    is tried again after the next pause rather than ending the supervision."""
    monkeypatch.setattr(delivery, "FIRST_PAUSE", 0.01)
    starts: list[int] = []

    def spawn(self: DeliveryProcess) -> subprocess.Popen[bytes]:
        starts.append(1)
        if len(starts) == 2:
            raise OSError("no more processes")
        return subprocess.Popen([sys.executable, "-c", "pass"])  # ends at once

    monkeypatch.setattr(DeliveryProcess, "_spawn", spawn)
    supervised = DeliveryProcess([])
    supervised.start()
    try:
        assert wait_for(lambda: len(starts) >= 4, timeout=20)
    finally:
        assert supervised.stop(5)
    assert not supervised.link.port_file.parent.exists()
