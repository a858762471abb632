"""The fleet's roster of live workers and its queue depth samples, kept in shared state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from otpagent import IntelligentOTPAgent
from otpagent.fleet import (
    PRESENCE_SECONDS,
    ROSTER_KEY,
    SAMPLE_SECONDS,
    FleetRoster,
    live_workers,
    queue_depth_samples,
)
from otpagent.testing import T0, InMemoryStorage
from tests.conftest import agent_config


def test_a_running_dispatcher_is_in_the_roster_until_it_stops(tmp_path: Path) -> None:
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent, IntelligentOTPAgent(agent_config(tmp_path)) as other:
        state = agent.capabilities.shared_state
        assert live_workers(state, agent.clock()) == []

        agent.start_processing()
        seen_from_another_process = live_workers(other.capabilities.shared_state, other.clock())
        agent.stop_processing()

        assert [w.worker_id for w in seen_from_another_process] == [agent.dispatcher.worker_id]
        assert seen_from_another_process[0].threads == agent.config.dispatcher.workers
        assert live_workers(state, agent.clock()) == []
        assert agent.get_metrics()["workers"] == {"live": 0, "threads": 0, "processes": []}


def test_a_presence_not_renewed_lapses_and_the_next_write_prunes_it() -> None:
    state = InMemoryStorage()
    dead, alive = FleetRoster(state, "host:1:dead", threads=4), FleetRoster(state, "host:2:alive", threads=8)
    dead.join(T0)
    alive.join(T0)

    at_the_edge = [w.worker_id for w in live_workers(state, T0 + PRESENCE_SECONDS)]
    after = [w.worker_id for w in live_workers(state, T0 + PRESENCE_SECONDS + 1)]

    alive.renew(T0 + PRESENCE_SECONDS + 1)

    assert at_the_edge == ["host:1:dead", "host:2:alive"]
    assert after == []
    assert set(json.loads(state.get_state(ROSTER_KEY) or "{}")) == {"host:2:alive"}, "the dead entry is gone"


def test_the_queue_depth_is_sampled_once_a_minute_by_whichever_worker_comes_first() -> None:
    state = InMemoryStorage()
    first, second = FleetRoster(state, "a", threads=1), FleetRoster(state, "b", threads=1)
    minute = T0 - T0 % SAMPLE_SECONDS
    asked: list[str] = []

    def depth(name: str, value: int) -> Callable[[], int]:
        def read() -> int:
            asked.append(name)
            return value

        return read

    first.tick(minute + 1, depth("a", 7))
    second.tick(minute + 6, depth("b", 9))
    second.tick(minute + SAMPLE_SECONDS + 2, depth("b", 3))

    assert queue_depth_samples(state, minute) == [(minute, 7), (minute + SAMPLE_SECONDS, 3)]
    assert asked == ["a", "b"], "a worker that finds the minute sampled does not count the queue"
    assert queue_depth_samples(state, minute + 1) == [(minute + SAMPLE_SECONDS, 3)]


def test_a_roster_written_by_something_else_is_read_as_empty_not_as_an_error() -> None:
    state = InMemoryStorage()
    state.put_state(ROSTER_KEY, "not json")

    assert live_workers(state, T0) == []
    FleetRoster(state, "w", threads=2).join(T0)
    assert [w.worker_id for w in live_workers(state, T0)] == ["w"]
