"""Channel guard rails: a channel that raises, returns garbage or hangs never wedges a message.

Each broken behaviour ends as a transient failure of that channel: an attempt is recorded,
retried with backoff, then the message falls back to the next channel, then fails with an error
that names the channel and its plugin. Hangs use short configured timeouts and real threads;
the tests assert on recorded outcomes and on the worker pool's counts, never on durations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from otpagent import IntelligentOTPAgent, MessageRequest, Status
from otpagent.dispatcher import Dispatcher
from otpagent.hookspecs import hookimpl
from otpagent.model import Envelope, SendResult
from otpagent.plugins import build_registry, get_plugin_manager
from tests.conftest import agent_config, wait_for

PHONE = "+447700900124"
Script = Callable[[Envelope], Any]
#: channel script name -> what its send does (set by each test through the fixture)
SCRIPTS: dict[str, Script] = {}


class ScriptedChannel:
    """A channel whose ``send`` does whatever the test scripted (raise, return junk, hang)."""

    def __init__(self, name: str, kind: str, script: str) -> None:
        self.name = name
        self.kind = kind
        self.script = script

    def supports(self, envelope: Envelope) -> bool:
        return True

    def check(self, envelope: Envelope) -> str | None:
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        return 0.0

    def send(self, envelope: Envelope) -> Any:
        return SCRIPTS[self.script](envelope)

    def close(self) -> None:
        pass


class _ScriptedPlugin:
    @hookimpl
    def otpagent_register_channels(self, register: Any) -> None:
        register("scripted", lambda spec: ScriptedChannel(spec.name, spec.kind or "sms", spec.settings["script"]))


class Hang:
    """A send that blocks until the test releases it (every hang is released at teardown)."""

    def __init__(self, times: int | None = None) -> None:
        self.times = times  # hang on the first ``times`` calls (None: on every call)
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, envelope: Envelope) -> SendResult:
        with self._lock:
            self.calls += 1
            hang = self.times is None or self.calls <= self.times
        if not hang:
            return SendResult.accepted("second-call")
        self.entered.set()
        self.release.wait()  # threading.Event().wait(): an SDK stuck in a read
        return SendResult.accepted("late")


def raises(envelope: Envelope) -> SendResult:
    raise TimeoutError("read timed out")


#: How errors name the in-process test plugin (installed plugins are named by distribution and version).
SCRIPTED = "scripted-test (registered in process)"


@pytest.fixture
def scripted_agent(tmp_path: Path) -> Iterator[Callable[..., IntelligentOTPAgent]]:
    pm: pluggy.PluginManager = get_plugin_manager()
    plugin = _ScriptedPlugin()
    pm.register(plugin, name="scripted-test")
    agents: list[IntelligentOTPAgent] = []
    hangs: list[Hang] = []

    def make(scripts: dict[str, Script], *, labels: dict[str, str] | None = None,
             weights: dict[str, float] | None = None, **overrides: Any) -> IntelligentOTPAgent:
        channels = {}
        for name, script in scripts.items():
            SCRIPTS[f"{tmp_path}:{name}"] = script
            if isinstance(script, Hang):
                hangs.append(script)
            channels[name] = {"plugin": "scripted", "kind": "sms", "script": f"{tmp_path}:{name}",
                              "weight": (weights or {}).get(name, 1.0)}
        agent = IntelligentOTPAgent(agent_config(tmp_path, channels=channels, **overrides), registry=build_registry(pm))
        agents.append(agent)
        if labels is not None:  # as if the channels came from an installed distribution
            d = agent.dispatcher
            agent._dispatcher = Dispatcher(
                config=agent.config, storage=agent.storage, capabilities=agent.capabilities, channels=agent.channels,
                channel_configs=agent.channel_configs, planner=agent.planner, strategy=agent.strategy,
                breakers=agent.breakers, bus=agent.bus, clock=agent.clock, worker_id=d.worker_id,
                plugin_labels=labels)
        return agent

    yield make
    for hang in hangs:
        hang.release.set()
    for agent in agents:
        agent.close()
    pm.unregister(plugin)
    SCRIPTS.clear()


def _deadline(workers: int, timeout: float, grace: float) -> dict[str, Any]:
    """A dispatcher section whose sends are abandoned after ``timeout`` + ``grace`` seconds."""
    return {"workers": workers, "poll_interval_seconds": 0.05, "channel_timeout_seconds": timeout,
            "channel_timeout_grace_seconds": grace}


def _send(agent: IntelligentOTPAgent) -> str:
    return agent.send_message(MessageRequest(phone_number=PHONE, content="guarded", priority="HIGH"))


def _settled(agent: IntelligentOTPAgent, message_id: str, status: Status, timeout: float = 30) -> bool:
    return wait_for(lambda: agent.get_delivery_report(message_id).status is status, timeout)  # type: ignore[union-attr]


@pytest.mark.parametrize(("script", "code", "says"), [
    (raises, "exception", "raised TimeoutError: read timed out"),
    (lambda envelope: None, "bad-result", "returned None instead of a SendResult"),
    (lambda envelope: "ok", "bad-result", "returned a str instead of a SendResult"),
])
def test_a_broken_channel_is_retried_then_falls_back_then_fails_naming_the_plugin(scripted_agent, script, code,
                                                                                   says):
    agent = scripted_agent({"a": script, "b": script}, weights={"a": 2.0})
    agent.start_processing()
    message_id = _send(agent)

    assert _settled(agent, message_id, Status.FAILED)
    report = agent.get_delivery_report(message_id)
    assert [a.channel for a in report.attempt_log] == ["a", "a", "a", "b", "b", "b"], "3 tries each, then fallback"
    assert {(a.outcome.value, a.error_code) for a in report.attempt_log} == {("transient", code)}
    assert report.attempt_log[0].error_message == f"channel a ({SCRIPTED}) {says}"
    assert report.last_error == f"channel b ({SCRIPTED}) {says} [{code}]"
    assert [e.type for e in report.history].count("fallback") == 1
    assert agent.dispatcher.counters["channel_faults"] == 6


def test_the_error_names_the_plugin_distribution_and_is_logged_once_a_minute(scripted_agent, caplog):
    agent = scripted_agent({"SMS": raises}, labels={"SMS": "acme-sms 1.0.2"})
    agent.start_processing()
    message_id = _send(agent)

    assert _settled(agent, message_id, Status.FAILED)
    report = agent.get_delivery_report(message_id)
    assert report.last_error == "channel SMS (acme-sms 1.0.2) raised TimeoutError: read timed out [exception]"
    assert len(report.attempt_log) == 3
    lines = [r.getMessage() for r in caplog.records if "channel_fault" in r.getMessage()]
    assert len(lines) == 1, "three identical faults within a minute: one log line"
    assert "plugin='acme-sms 1.0.2'" in lines[0] and "TimeoutError" in caplog.text


def test_a_broken_channel_falls_back_to_a_healthy_one(scripted_agent):
    agent = scripted_agent({"a": lambda envelope: None, "b": lambda envelope: SendResult.accepted("fine")},
                           weights={"a": 2.0})
    agent.start_processing()
    message_id = _send(agent)

    assert _settled(agent, message_id, Status.SENT)
    report = agent.get_delivery_report(message_id)
    assert [a.channel for a in report.attempt_log] == ["a", "a", "a", "b"]
    assert report.provider_message_id == "fine"


def test_a_hung_send_is_abandoned_its_worker_replaced_and_its_late_result_discarded(scripted_agent, caplog):
    hang = Hang(times=1)
    agent = scripted_agent({"slow": hang}, dispatcher=_deadline(2, 0.3, 0.2))
    agent.start_processing()
    message_id = _send(agent)

    # The first call hangs; it is abandoned, recorded as a timeout, retried by this same worker
    # process (same worker id) on a fresh thread, and the retry is accepted.
    assert _settled(agent, message_id, Status.SENT)
    report = agent.get_delivery_report(message_id)
    assert [(a.outcome.value, a.error_code) for a in report.attempt_log] == [
        ("transient", "timeout"), ("accepted", None)]
    assert report.attempt_log[0].error_message == (
        f"channel slow ({SCRIPTED}) did not return within 0.3 s + 0.2 s grace; the call was abandoned")
    pool = agent.dispatcher.pool
    assert pool is not None
    assert (pool.live_workers, pool.abandoned) == (2, 1), "the stuck thread's slot went to a new thread"
    assert agent.dispatcher.counters["abandoned_calls"] == 1

    hang.release.set()  # the stuck call returns "accepted" at last: too late, it must not count
    assert wait_for(lambda: pool.abandoned == 0, 10)
    after = agent.get_delivery_report(message_id)
    assert after.status is Status.SENT and after.provider_message_id == "second-call"
    assert len(after.attempt_log) == 2
    assert pool.live_workers == 2, "the returning thread left: the pool was already whole"
    assert "late_result_discarded" in caplog.text


def test_a_channel_that_hangs_on_every_call_ends_failed_and_never_stuck(scripted_agent):
    agent = scripted_agent({"a": Hang(), "b": Hang()}, weights={"a": 2.0}, retry={"max_attempts": 1},
                           dispatcher=_deadline(4, 0.2, 0.1))
    agent.start_processing()
    message_id = _send(agent)

    assert _settled(agent, message_id, Status.FAILED)
    report = agent.get_delivery_report(message_id)
    assert [(a.channel, a.error_code) for a in report.attempt_log] == [("a", "timeout"), ("b", "timeout")]
    assert report.last_error.startswith(f"channel b ({SCRIPTED}) did not return within 0.2 s + 0.1 s grace")
    pool = agent.dispatcher.pool
    assert pool is not None
    assert (pool.live_workers, pool.abandoned) == (4, 2)


def test_stop_processing_returns_while_a_call_hangs(scripted_agent):
    hang = Hang()
    agent = scripted_agent({"slow": hang}, dispatcher=_deadline(2, 0.3, 0.2))
    agent.start_processing()
    message_id = _send(agent)
    assert hang.entered.wait(10)

    stopper = threading.Thread(target=agent.stop_processing)
    stopper.start()
    stopper.join(60)

    assert not stopper.is_alive(), "stop_processing waited on the hung call"
    assert not agent.is_running
    report = agent.get_delivery_report(message_id)
    assert report.status is Status.RETRYING, "the abandoned call was recorded before stop returned"
    assert [a.error_code for a in report.attempt_log] == ["timeout"]


def test_a_channel_that_hangs_every_call_opens_its_circuit_and_the_error_still_names_the_plugin(scripted_agent):
    agent = scripted_agent({"slow": Hang()}, retry={"max_attempts": 5, "base_delay_seconds": 0.01,
                                                    "max_delay_seconds": 0.02},
                           circuit={"consecutive_failures": 2}, dispatcher=_deadline(4, 0.2, 0.1))
    agent.start_processing()
    message_id = _send(agent)

    assert _settled(agent, message_id, Status.FAILED)
    report = agent.get_delivery_report(message_id)
    assert [a.error_code for a in report.attempt_log] == ["timeout", "timeout"], "the circuit stopped the third try"
    assert agent.get_metrics()["channels"]["slow"]["circuit"] == "open"
    assert report.last_error.startswith(f"slow: circuit open (after: channel slow ({SCRIPTED}) did not return within")
    pool = agent.dispatcher.pool
    assert pool is not None and (pool.live_workers, pool.abandoned) == (4, 2)


class Held:
    """Sends that wait together on a provider until the test lets them all return."""

    def __init__(self) -> None:
        self.inside = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, envelope: Envelope) -> SendResult:
        with self._lock:
            self.inside += 1
        self.release.wait(60)
        return SendResult.accepted(f"held-{envelope.message_id}")


def test_a_burst_to_a_slow_provider_gets_every_slot_though_few_threads_start(scripted_agent):
    held = Held()
    agent = scripted_agent({"slow": held}, dispatcher={"workers": 12, "poll_interval_seconds": 0.05})
    try:
        ids = [agent.send_message(MessageRequest(phone_number=f"+4477009001{i:02d}", content="burst"))
               for i in range(12)]
        agent.start_processing()
        pool = agent.dispatcher.pool
        assert pool is not None and pool.core == 4
        assert wait_for(lambda: held.inside == 12, 30), f"{held.inside} of 12 sends in flight"
        assert pool.live_workers == 12, "a thread for each slot while the provider holds them"
    finally:
        held.release.set()
    assert all(_settled(agent, message_id, Status.SENT) for message_id in ids)
