"""Figure 10: the HTTP API, ``POST /v1/otp`` then ``POST /v1/otp/verify``, over loopback.

The real ``otpagent serve`` runs in its own process (with its workers, delivering to a console
outbox); a lean asyncio client on 8 keep-alive connections issues every code, reads the codes
from the outbox (not timed: a user reads them from a phone), then verifies them all.
pairs/s = pairs / (issue time + verify time). The API's abuse limits are switched off (they
would answer 429 to one client sending thousands of codes, which is their job). Baseline: a
bare ASGI hello-world on the same server (uvicorn), same client, two requests per pair.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    Context,
    Row,
    agent_config,
    child_env,
    console_channel,
    free_port,
    phone,
    rate,
    venv_bin,
    wait_for,
)
from bench.httpload import post_all

CONNECTIONS = 8
_CODE = re.compile(r"\b(\d{6})\b")


def unavailable() -> str | None:
    if importlib.util.find_spec("uvicorn") is None:
        return "uvicorn is not installed"
    try:
        from otpagent.server import create_app  # noqa: F401
    except ImportError as exc:
        return f"otpagent.server has no create_app ({exc})"
    return None


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def server(command: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env())
    try:
        if not wait_for(lambda: _listening(port) or proc.poll() is not None, 60, 0.05) or proc.poll() is not None:
            raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-800:]}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def api_pairs(tmp: Path, count: int, budget: float, *, workers: bool = True) -> tuple[int, float, int]:
    """(pairs verified, issue + verify seconds, codes issued) through ``otpagent serve``.

    With ``workers`` the server also delivers every code (to the console outbox, where the
    codes are read); without, the codes are read from the queued messages in the database.
    """
    from otpagent.server.settings import LIMIT_NAMES

    key = "bench-" + secrets.token_hex(16)
    outbox = tmp / "outbox.jsonl"
    config = agent_config(tmp / "a.db", channels={"DEV": console_channel(outbox=outbox)},
                          server={"api_keys": [key], "limits": dict.fromkeys(LIMIT_NAMES)})
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    port = free_port()
    headers = {"Authorization": f"Bearer {key}"}
    recipients = [phone(7_000_000 + i) for i in range(count)]
    command = [venv_bin("otpagent"), "--config", str(path), "serve", "--port", str(port)]
    if not workers:
        command.append("--no-workers")
    with server(command, port, tmp / "serve.log"):
        post_all(port, "/v1/otp", [{"phone_number": phone(6_999_999)}], connections=1, headers=headers)  # warm
        start = time.perf_counter()
        issued = post_all(port, "/v1/otp", [{"phone_number": r} for r in recipients], connections=CONNECTIONS,
                          headers=headers, budget=budget)
        issue_seconds = time.perf_counter() - start
        ids = {r[1]["message_id"]: i for i, r in enumerate(issued) if r and r[0] == 202}
        codes: dict[int, str] = {}

        def read_codes() -> bool:
            if not workers:
                with sqlite3.connect(f"file:{tmp / 'a.db'}?mode=ro", uri=True) as db:
                    for message_id, secret in db.execute("SELECT id, secret FROM messages WHERE message_type = 'otp'"):
                        if message_id in ids and secret:
                            codes[ids[message_id]] = secret
                return len(codes) >= len(ids)
            if outbox.exists():
                for line in outbox.read_text().split("\n")[:-1]:  # complete lines only
                    entry = json.loads(line)
                    match = _CODE.search(entry["body"])
                    if entry["message_id"] in ids and match:
                        codes[ids[entry["message_id"]]] = match.group(1)
            return len(codes) >= len(ids)

        wait_for(read_codes, 60, 0.1)
        order = sorted(codes)
        start = time.perf_counter()
        verified = post_all(port, "/v1/otp/verify", [{"recipient": recipients[i], "code": codes[i]} for i in order],
                            connections=CONNECTIONS, headers=headers, budget=budget)
        verify_seconds = time.perf_counter() - start
    ok = sum(1 for r in verified if r and r[0] == 200 and r[1].get("verified"))
    return ok, issue_seconds + verify_seconds, len(ids)


def hello_pairs(tmp: Path, count: int, budget: float) -> tuple[int, float]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.hello:app", "--port", str(port), "--log-level", "warning",
               "--no-access-log", "--no-server-header"]
    with server(command, port, tmp / "hello.log"):
        post_all(port, "/", [{}], connections=1)
        start = time.perf_counter()
        results = post_all(port, "/", [{"recipient": phone(i), "code": "123456"} for i in range(2 * count)],
                           connections=CONNECTIONS, budget=budget)
        seconds = time.perf_counter() - start
    return sum(1 for r in results if r and r[0] == 200) // 2, seconds


def run(ctx: Context) -> list[Row]:
    why = unavailable()
    if why is not None:
        return [Row.unavailable("HTTP API: POST /v1/otp + verify", "pairs/s", ">= 1,000 pairs/s", why)]
    count = ctx.pick(2000, 50)
    budget = ctx.seconds(60, 20)
    rows = []
    rounds = 1 if ctx.quick else 2
    with ctx.scratch("http") as tmp:
        baseline = max(rate(*hello_pairs(tmp, count, budget)) for _ in range(rounds))
        for workers in (True, False):
            value, ok, issued = 0.0, 0, 0
            for _ in range(rounds):  # best of: the machine is shared
                with ctx.scratch(f"http-{workers}") as sub:
                    round_ok, seconds, round_issued = api_pairs(sub, count, budget, workers=workers)
                if rate(round_ok, seconds) > value:
                    value, ok, issued = rate(round_ok, seconds), round_ok, round_issued
            note = "" if ok == count else f"{issued}/{count} issued (202), {ok} verified"
            ctx.say(f"http pairs ({'with' if workers else 'no'} workers): {value:,.0f} pairs/s "
                    f"vs hello-world {baseline:,.0f}")
            if workers:
                rows.append(Row("HTTP API: POST /v1/otp + verify, loopback (serve with workers)", value, "pairs/s",
                                ">= 1,000 pairs/s", baseline, "ASGI hello-world on uvicorn, 2 req/pair",
                                passed=value >= 1000 and ok == count, note=note))
            else:
                rows.append(Row("HTTP API, same, `serve --no-workers` (API alone)", value, "pairs/s",
                                "— (shows the API's own cost)", baseline, "ASGI hello-world on uvicorn, 2 req/pair",
                                passed=None, note=note))
    return rows
