"""``/metrics``: the fleet's windows are gauges named for their window; counters are this
process's own and carry its ``process`` label."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.service.conftest import LiveServer


def test_every_counter_is_per_process_and_every_window_is_a_gauge(live: LiveServer, api: httpx.Client) -> None:
    message_id = api.post("/v1/messages", json={"phone_number": "+447700900006", "content": "m"}).json()["message_id"]
    assert wait_for(lambda: api.get(f"/v1/messages/{message_id}").json()["status"] == "sent")
    assert wait_for(lambda: "otpagent_attempt_latency_seconds_count{" in api.get("/metrics").text)

    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}

    growing = {name: f for name, f in families.items() if f.type in ("counter", "histogram")}
    assert set(growing) == {"otpagent_worker_events", "otpagent_events_dropped", "otpagent_attempt_latency_seconds"}
    for family in growing.values():
        assert family.samples and all(s.labels.get("process") == live.agent.dispatcher.worker_id
                                      for s in family.samples), family.name
    windowed = [name for name in families if name.endswith(("_24h", "_5m", "_24h_seconds"))]
    assert len(windowed) == 8 and all(families[name].type == "gauge" for name in windowed)
    threads = families["otpagent_worker_threads_running"]
    pool = live.agent.dispatcher.pool
    assert threads.type == "gauge" and pool is not None
    assert [(s.labels["process"], s.value) for s in threads.samples] == [
        (live.agent.dispatcher.worker_id, float(pool.live_workers))]
    assert 1 <= pool.live_workers <= live.agent.config.dispatcher.workers
