"""Scale-out: four real ``otpagent run`` workers sharing one PostgreSQL schema.

Messages are enqueued first (mixed priorities), then the fleet starts; each worker appends
what it "sends" to its own console outbox, so the tests can count deliveries per message and
per worker. Every wait is bounded.
"""

from __future__ import annotations

import bisect
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.crashrecovery import kill_one_of_two
from otpagent import IntelligentOTPAgent, MessageRequest
from tests.contract.backends import PG_DSN
from tests.postgres.conftest import terminate_backends
from tests.postgres.fleet import Fleet
from tests.postgres.proxy import PgProxy
from tests.recovery import assert_recovered

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


def _enqueue(fleet: Fleet, count: int) -> list[str]:
    requests = [MessageRequest(phone_number=f"+447700900{i % 1000:03d}", content=f"fleet message {i}",
                               priority=PRIORITIES[i % 4]) for i in range(count)]
    with IntelligentOTPAgent(fleet.config()) as agent:
        return list(agent.send_bulk_messages(requests))


@pytest.fixture
def make_fleet(tmp_path: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Fleet]]:
    monkeypatch.setenv("OTPAGENT_LOAD_PLUGINS", "console,postgres")
    fleets: list[Fleet] = []

    def make(**options: Any) -> Fleet:
        fleet = Fleet(tmp_path, pg_schema, 4, **options)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def test_four_workers_deliver_5000_messages_exactly_once_in_priority_order(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet()
    ids = _enqueue(fleet, 5000)

    started = time.monotonic()
    fleet.start()
    assert fleet.wait_delivered(set(ids), timeout=120), "every message delivered within the bound"
    seconds = time.monotonic() - started
    delivered = fleet.delivered()

    assert set(delivered) == set(ids)
    assert all(n == 1 for n in delivered.values()), "no message accepted twice"
    per_worker = [len(fleet.entries(i)) for i in range(4)]
    assert all(n > 0 for n in per_worker), f"every worker took a share: {per_worker}"
    entries = fleet.entries()
    t0 = min(e["at"] for e in entries)
    by_priority = {p: sorted(e["at"] - t0 for e in entries if e["priority"] == p) for p in PRIORITIES}
    medians = [statistics.median(by_priority[p]) for p in PRIORITIES]
    assert medians == sorted(medians), f"higher priorities go first: medians {medians}"
    assert by_priority["CRITICAL"][int(0.95 * 1250)] < by_priority["LOW"][int(0.05 * 1250)]
    print(f"5000 messages, 4 workers: {seconds:.1f}s including start-up; per worker {per_worker}")


def test_the_fleet_holds_the_channel_rate_limit(make_fleet: Callable[..., Fleet], pg_schema: str) -> None:
    limit, burst = 50.0, 10
    fleet = make_fleet(per_second=limit, burst=burst)
    ids = _enqueue(fleet, 600)

    fleet.start()
    assert fleet.wait_delivered(set(ids), timeout=120)

    # Judge what the limiter promises, not when a loaded machine got round to sending: the
    # slot each send was granted, recorded with its attempt. GCRA grants at most
    # burst + rate * T slots in any window of T seconds, fleet-wide, exactly.
    slots = sorted(_rate_limit_slots(pg_schema))
    assert len(slots) == len(ids), "every send went through the limiter"
    for window in (0.1, 1.0, 2.0):
        # (slots are stored to the microsecond: a window shorter by 10 µs absorbs the rounding)
        busiest = max(bisect.bisect_left(slots, start + window - 1e-5) - i for i, start in enumerate(slots))
        print(f"busiest {window} s window: {busiest} slots (bound {burst + limit * window:.0f})")
        assert busiest <= burst + limit * window


def _rate_limit_slots(schema: str) -> list[float]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute(sql.SQL("SELECT data FROM {}.events WHERE type = 'attempt'").format(
            sql.Identifier(schema))).fetchall()
    return [json.loads(data)["rate_limit_slot"] for (data,) in rows]


def test_a_worker_killed_with_sigkill_loses_nothing(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet(latency_ms=20, lease_seconds=2.0)
    ids = _enqueue(fleet, 2000)
    fleet.start()
    deadline = time.monotonic() + 60
    while len(fleet.entries()) < 500 and time.monotonic() < deadline:
        fleet.assert_alive()
        time.sleep(0.05)

    fleet.kill(0)
    killed_sent = {e["message_id"] for e in fleet.entries(0)}
    assert fleet.wait_delivered(set(ids), timeout=120)

    delivered = fleet.delivered()
    duplicates = {m for m, n in delivered.items() if n > 1}
    print(f"killed worker had sent {len(killed_sent)}; duplicates after recovery: {len(duplicates)}")
    assert set(delivered) == set(ids), "none lost"
    assert all(delivered[m] == 2 for m in duplicates)
    assert duplicates <= killed_sent, "only the killed worker's in-flight sends repeat"
    assert len(duplicates) <= 16, "at most one per worker thread of the killed process"


def test_a_killed_workers_messages_are_sent_by_the_survivor_once_its_short_lease_ends(
    tmp_path: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers on one schema with the default lease and heartbeat; one is killed with sends
    in flight. Its leases end at most one lease after the kill and the other sends them, although
    nothing is enqueued meanwhile (no NOTIFY wakes the survivor: it polls for expired leases)."""
    monkeypatch.setenv("OTPAGENT_LOAD_PLUGINS", "console,postgres")
    storage = {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema, "pool_max_size": 6}
    run = kill_one_of_two(tmp_path, storage, count=200, latency_ms=200, victim_latency_ms=3000, sent_before_kill=2)

    assert run.lease_seconds == 6.0, "the defaults are what this test shows"
    assert_recovered(run)


def test_workers_recover_when_their_database_connections_are_terminated(
    make_fleet: Callable[..., Fleet], pg_schema: str,
) -> None:
    # Leases long enough that none lapses while the workers reconnect, however loaded the
    # machine: a lease that ran out mid-recovery would let another worker send the message
    # again, which says how fast the machine reconnected, not what the code promises (that an
    # outcome is kept and retried, and a message held under a lease is sent once). A claim
    # lost in flight strands its messages for one lease, well inside the wait below.
    fleet = make_fleet(latency_ms=5, lease_seconds=15.0)
    ids = _enqueue(fleet, 2000)
    fleet.start()
    # A worker whose start-up connection is terminated fails to start, as it should (exit code 3,
    # "unavailable"); this test is about workers that were running, so it waits until all are.
    assert fleet.wait_running(60)
    deadline = time.monotonic() + 60
    while len(fleet.entries()) < 400 and time.monotonic() < deadline:
        fleet.assert_alive()
        time.sleep(0.05)

    terminated = 0
    for _ in range(3):
        terminated += terminate_backends(pg_schema)
        threading.Event().wait(0.3)
    assert fleet.wait_delivered(set(ids), timeout=120)

    delivered = fleet.delivered()
    duplicates = sum(1 for n in delivered.values() if n > 1)
    print(f"terminated {terminated} connections; duplicates: {duplicates}")
    assert terminated >= 4
    assert set(delivered) == set(ids)
    assert duplicates == 0
    fleet.assert_alive()


def test_workers_ride_out_a_database_outage(make_fleet: Callable[..., Fleet]) -> None:
    proxy = PgProxy()
    fleet = make_fleet(latency_ms=5, lease_seconds=5.0, dsn=proxy.dsn())
    try:
        ids = _enqueue(fleet, 1500)
        fleet.start()
        # A worker still connecting when the outage begins would (rightly) fail to start.
        assert fleet.wait_running(60)
        deadline = time.monotonic() + 60
        while len(fleet.entries()) < 300 and time.monotonic() < deadline:
            fleet.assert_alive()
            time.sleep(0.05)

        proxy.outage()  # every connection cut, new ones refused: the database is "down"
        during = len(fleet.entries())
        threading.Event().wait(3.0)
        stalled = len(fleet.entries()) - during
        proxy.restore()
        assert fleet.wait_delivered(set(ids), timeout=120)
    finally:
        fleet.stop()
        proxy.close()

    delivered = fleet.delivered()
    duplicates = sum(1 for n in delivered.values() if n > 1)
    print(f"sent during the 3 s outage: {stalled} (in flight when it began); duplicates: {duplicates}")
    assert set(delivered) == set(ids)
    assert stalled <= 4 * 16
    assert duplicates == 0
