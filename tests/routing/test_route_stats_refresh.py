"""The routing statistics are read again in the background: no message waits for that read."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from otpagent.protocols import ChannelStats
from otpagent.routing.planner import RoutePlanner
from otpagent.routing.priority import PriorityStrategy
from tests.conftest import FakeClock


class HeldReads:
    """A storage read whose calls after the first wait until the test releases them."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = threading.Event()
        self.started = threading.Event()

    def _read(self) -> None:
        self.reads += 1
        if self.reads > 1:
            self.started.set()
            assert self.release.wait(10), "the test never released the read"


class SlowStats(HeldReads):
    """``Housekeeping.stats``, held after the first read."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 1
        self.fail = False

    def stats(self, now: float) -> Any:
        self._read()
        if self.fail:
            raise RuntimeError("database away")
        channels = {"SMS": ChannelStats(attempts=self.attempts, accepted=self.attempts)}
        return type("Stats", (), {"channels": channels})()


def planner(storage: SlowStats, clock: FakeClock) -> RoutePlanner:
    return RoutePlanner(channels={}, configs={}, strategy=PriorityStrategy(), breakers=None,  # type: ignore[arg-type]
                        storage=storage, voice_otp_enabled=False, clock=clock, stats_ttl=5.0)  # type: ignore[arg-type]


def test_a_stale_value_is_returned_at_once_while_one_thread_reads_the_next() -> None:
    storage, clock = SlowStats(), FakeClock()
    routes = planner(storage, clock)
    assert routes.channel_stats()["SMS"].attempts == 1  # the first read is waited for

    storage.attempts = 2
    clock.advance(5.0)
    assert routes.channel_stats()["SMS"].attempts == 1  # stale, and returned while the read waits
    assert storage.started.wait(10)
    for _ in range(50):  # other messages meanwhile: no second read starts
        assert routes.channel_stats()["SMS"].attempts == 1
    assert storage.reads == 2

    storage.release.set()
    assert routes.stats.wait_for_read(10)  # the background read finished
    assert routes.channel_stats()["SMS"].attempts == 2
    assert storage.reads == 2  # fresh again: no read until the interval has passed


def test_a_failed_read_keeps_the_old_statistics_until_the_next_interval(caplog: pytest.LogCaptureFixture) -> None:
    storage, clock = SlowStats(), FakeClock()
    routes = planner(storage, clock)
    routes.channel_stats()
    storage.fail = True
    storage.release.set()
    clock.advance(5.0)

    assert routes.channel_stats()["SMS"].attempts == 1
    assert routes.stats.wait_for_read(10)
    for _ in range(20):  # not read again on every message while the database is away
        assert routes.channel_stats()["SMS"].attempts == 1
    assert storage.reads == 2

    clock.advance(5.0)
    routes.channel_stats()
    assert routes.stats.wait_for_read(10)
    assert storage.reads == 3


def test_the_first_read_is_waited_for_and_its_error_reaches_the_caller() -> None:
    storage, clock = SlowStats(), FakeClock()
    storage.fail = True
    storage.release.set()
    routes = planner(storage, clock)
    with pytest.raises(RuntimeError, match="database away"):
        routes.channel_stats()
    storage.fail = False
    assert routes.channel_stats()["SMS"].attempts == 1


class SlowSpend(HeldReads):
    """``Housekeeping.costs_by_day``, held after the first read."""

    def __init__(self) -> None:
        super().__init__()
        self.spent = 1.0

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        self._read()
        return {"SMS": {time.strftime("%Y-%m-%d", time.gmtime(since)): self.spent}}


def test_todays_spend_is_read_in_the_background_too() -> None:
    storage, clock = SlowSpend(), FakeClock()
    routes = planner(storage, clock)  # type: ignore[arg-type]
    assert routes.spent_today() == {"SMS": 1.0}  # the first read is waited for

    storage.spent = 3.0
    clock.advance(5.0)
    assert routes.spent_today() == {"SMS": 1.0}  # stale while the read waits: the message goes on
    assert storage.started.wait(10)
    storage.release.set()
    assert routes.spend.wait_for_read(10)
    assert routes.spent_today() == {"SMS": 3.0}
    assert storage.reads == 2


def test_forget_makes_the_next_caller_wait_for_a_fresh_read() -> None:
    storage, clock = SlowSpend(), FakeClock()
    storage.release.set()
    routes = planner(storage, clock)  # type: ignore[arg-type]
    assert routes.spent_today() == {"SMS": 1.0}

    storage.spent = 2.0
    routes.spend.forget()

    assert routes.spent_today() == {"SMS": 2.0}  # no interval passed: read again because forgotten
    assert storage.reads == 2
