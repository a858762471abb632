"""Crash safety (SIGKILL mid-dispatch) and many threads at once: nothing lost, nothing doubled."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bench.crashrecovery import kill_one_of_two
from otpagent import IntelligentOTPAgent, MessageRequest, Priority
from tests.conftest import Outbox, agent_config, wait_for
from tests.recovery import assert_recovered

WORKER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from otpagent import IntelligentOTPAgent, MessageRequest
    config = json.loads(sys.argv[1])
    agent = IntelligentOTPAgent(config)
    ids = agent.send_bulk_messages([
        MessageRequest(phone_number="+447700900%03d" % (i % 1000), content="msg %d" % i, priority="HIGH")
        for i in range(int(sys.argv[2]))
    ])
    print(json.dumps(ids), flush=True)
    agent.start_processing()
    time.sleep(120)
""")


def test_sigkill_mid_dispatch_loses_nothing_and_duplicates_only_in_flight_sends(tmp_path):
    outbox = Outbox(tmp_path / "outbox.jsonl")
    workers = 8
    config = agent_config(
        tmp_path,
        channels={"sms": {"plugin": "console", "kind": "sms", "quiet": True, "outbox": str(outbox.path),
                          "latency_ms": 5}},
        dispatcher={"workers": workers, "poll_interval_seconds": 0.05, "lease_seconds": 1.0,
                    "channel_timeout_seconds": 0.5},
    )
    total = 300
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, json.dumps(config), str(total)],
                            stdout=subprocess.PIPE, text=True)
    try:
        ids = json.loads(proc.stdout.readline())
        assert len(ids) == total
        assert wait_for(lambda: len(outbox.entries()) >= 60, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sent_before = len(outbox.entries())
    assert sent_before < total, "the kill must land mid-run for this test to mean anything"

    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        assert agent.wait_until_idle(30)
        statuses = collections.Counter(agent.get_delivery_report(i).status.value for i in ids)

    counts = collections.Counter(e["message_id"] for e in outbox.entries())
    duplicates = {m: n for m, n in counts.items() if n > 1}
    print(f"sent before kill: {sent_before}; duplicates after recovery: {len(duplicates)}")
    assert set(counts) == set(ids), "every message delivered, none lost"
    assert statuses == {"sent": total}
    assert all(n == 2 for n in duplicates.values())
    assert len(duplicates) <= workers, "only sends in flight at the kill may repeat"


@pytest.mark.slow
def test_a_killed_workers_messages_are_sent_by_the_survivor_once_its_short_lease_ends(tmp_path, monkeypatch):
    """Two workers on one SQLite file with the default lease and heartbeat; one is killed with
    sends in flight. Its leases end at most one lease after the kill and the other sends them."""
    monkeypatch.setenv("OTPAGENT_LOAD_PLUGINS", "console")
    run = kill_one_of_two(tmp_path, {"backend": "sqlite", "path": str(tmp_path / "shared.db")}, count=200,
                          latency_ms=200, victim_latency_ms=3000, sent_before_kill=2)

    assert run.lease_seconds == 6.0, "the defaults are what this test shows"
    assert_recovered(run)


def test_many_threads_sending_and_verifying_at_once(make_agent, outbox):
    agent = make_agent(dispatcher={"workers": 16, "poll_interval_seconds": 0.05})
    agent.start_processing()
    ids: list[str] = []
    verified: list[bool] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def sender(t: int) -> None:
        try:
            mine = [agent.send_message(MessageRequest(phone_number=f"+4477009{t:02d}{i:03d}", content=f"{t}/{i}",
                                                      priority=Priority.HIGH)) for i in range(40)]
            phone = f"+4477009{t:02d}999"
            code = outbox.code_for(agent.send_otp(phone), timeout=20)
            ok, _ = agent.verify_otp(phone, code)
            with lock:
                ids.extend(mine)
                verified.append(ok)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors, errors
    assert len(ids) == 400 and len(set(ids)) == 400
    assert verified == [True] * 10
    assert agent.wait_until_idle(30)
    counts = collections.Counter(e["message_id"] for e in outbox.entries())
    assert all(counts[i] == 1 for i in ids)
    assert agent.storage.stats(time.time()).total == 410
