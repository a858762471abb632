"""Figure 4: dispatch through the Twilio plugin and the official SDK to a zero-latency fake.

Baseline: the official SDK calling the same fake from a bare thread pool with the same
thread count (one SDK client per thread, so the baseline is the best the SDK can do). The
agent runs the same messages through claim -> plan -> SDK send -> record.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import Context, Row, agent_config, child_env, phone, rate
from bench.fakeprovider import ACCOUNT_SID, AUTH_TOKEN, SENDER
from bench.parts.dispatch import drain, fill

WORKERS = 16
BODY = "Your parcel arrives today between 10:00 and 12:00."


@contextmanager
def fake_provider(latency: float = 0.0) -> Iterator[str]:
    """Start ``bench.fakeprovider`` in a child process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.fakeprovider", "--latency", str(latency)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake provider did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def fake_stats(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url + "/__stats", timeout=5) as response:
        return dict(json.loads(response.read()))


def twilio_channel(base_url: str) -> dict[str, Any]:
    return {"plugin": "twilio-sms", "api_config": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                                   "from": SENDER, "base_url": base_url, "timeout_seconds": 10}}


def sdk_client(base_url: str) -> Any:
    """The official SDK client, its HTTP client pointed at ``base_url`` with a timeout."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    parts = urlsplit(base_url)

    class ToFake(TwilioHttpClient):  # type: ignore[misc]
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            p = urlsplit(url)
            return super().request(method, urlunsplit((parts.scheme, parts.netloc, p.path, p.query, "")),
                                   *args, **kwargs)

    return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=ToFake(pool_connections=True, timeout=10))


def sdk_pool(base_url: str, count: int, threads: int, budget: float) -> tuple[int, float]:
    """``count`` SDK sends from ``threads`` bare threads, each with its own client."""
    tickets = itertools.count()
    done = [0] * threads
    clients = [sdk_client(base_url) for _ in range(threads)]
    deadline = time.perf_counter() + budget
    barrier = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        barrier.wait()
        for _ in range(count):
            i = next(tickets)
            if i >= count or time.perf_counter() >= deadline:
                return
            clients[k].messages.create(to=phone(i), from_=SENDER, body=BODY)
            done[k] += 1

    pool = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join(budget + 30)
    seconds = time.perf_counter() - start
    for c in clients:
        c.http_client.session and c.http_client.session.close()
    return sum(done), seconds


def agent_run(tmp: Path, base_url: str, count: int, workers: int, budget: float) -> tuple[int, float]:
    from otpagent import IntelligentOTPAgent

    config = agent_config(tmp / "a.db", channels={"SMS": twilio_channel(base_url)}, workers=workers)
    with IntelligentOTPAgent(config) as agent:
        fill(agent, count, ["SMS"])
        return drain(agent, count, budget)


def compare(ctx: Context, name: str, latency: float, workers: int, count: int, budget: float, rounds: int
            ) -> tuple[float, float, str]:
    """(agent msg/s, raw SDK msg/s, note) against one fake with ``latency``, best of ``rounds``."""
    notes: list[str] = []
    runs = itertools.count()
    with ctx.scratch(name) as tmp, fake_provider(latency) as base_url:
        def figure() -> float:
            directory = tmp / f"agent{next(runs)}"
            directory.mkdir()
            done, seconds = agent_run(directory, base_url, count, workers, budget)
            if done < count:
                notes.append(f"agent sent {done}/{count} within the time budget")
            return rate(done, seconds)

        value, baseline = ctx.best_of(figure, lambda: rate(*sdk_pool(base_url, count, workers, budget)), rounds)
        stats = fake_stats(base_url)
    if stats["rejected"]:
        notes.append(f"the fake rejected {stats['rejected']} requests")
    return value, baseline, "; ".join(dict.fromkeys(notes))


def run(ctx: Context) -> list[Row]:
    count = ctx.pick(2000, 100)
    value, baseline, note = compare(ctx, "twilio", 0.0, WORKERS, count, ctx.seconds(60, 15), ctx.rounds)
    ctx.say(f"twilio zero-latency: {value:,.0f} msg/s vs raw SDK {baseline:,.0f}")
    return [Row(f"dispatch via Twilio plugin + SDK, 0 ms fake, {WORKERS} workers", value, "msg/s",
                ">= 70% of raw SDK loop", baseline, f"SDK in {WORKERS} bare threads",
                passed=value >= 0.7 * baseline, note=note)]
