"""Figure 10: the HTTP API, ``POST /v1/otp`` then ``POST /v1/otp/verify``, over loopback.

The real ``otpagent serve`` runs in its own process (with its workers in the delivery process it
starts, delivering to a console outbox); a lean asyncio client on 8 keep-alive connections
issues every code, reads the codes from the outbox (not timed: a user reads them from a phone),
then verifies them all. pairs/s = pairs / (issue time + verify time). The target figure runs
with the abuse limits on: every send takes its three GCRA buckets (per API key, per client
address, per recipient), every verify its two request buckets and a look at its two failure
budgets (right codes spend none); the per-recipient send limit and the failure budgets keep
their defaults, the per-key and per-address request limits are raised above the load (one client
sends everything, which at the defaults is refused with 429, as it should be). Also shown:
limits off, the API alone (``--no-workers``), PostgreSQL with ``serve`` in 1 and in 2 processes
(``--processes 2``), and on both stores the workers in the server process
(``--workers-in-process``) against ``serve``'s delivery process. Baseline: a bare ASGI
hello-world on the same server (uvicorn), same client, two requests per pair.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_OTP_SECRET,
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
from bench.parts.postgres import drop
from bench.peers.cpu import machine_busy
from otpagent.otp_seal import CodeSealer

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


def _ready(port: int) -> bool:
    """Whether ``GET /readyz`` answers 200: the storage reachable and the workers running."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:  # not listening yet, or 503 (HTTPError is an OSError)
        return False


@contextmanager
def server(command: list[str], port: int, log: Path, *, readiness: bool = False) -> Iterator[None]:
    """``command`` serving on ``port`` until the block ends. With ``readiness``, the block
    starts once ``/readyz`` says ready, as a load balancer would send traffic: serve's delivery
    process boots for most of a second after the API listens, and its start-up (imports, the
    agent) would otherwise take CPU from the first seconds of the measured load."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env())
    def up() -> bool:
        return (_ready(port) if readiness else _listening(port)) or proc.poll() is not None

    try:
        if not wait_for(up, 60, 0.05) or proc.poll() is not None:
            raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-800:]}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


#: Abuse limits "on" for one client that sends everything: every bucket is taken per request;
#: the per-recipient send limit and the verify failure budgets at their defaults, the per-key
#: and per-address request limits above the load.
LIMITS_ON = {"otp_send_per_key": {"per_minute": 10_000_000, "burst": 100_000},
             "otp_send_per_ip": {"per_minute": 10_000_000, "burst": 100_000},
             "otp_verify_per_key": {"per_minute": 10_000_000, "burst": 100_000},
             "otp_verify_per_ip": {"per_minute": 10_000_000, "burst": 100_000}}


def api_pairs(tmp: Path, count: int, budget: float, *, workers: bool = True, limits: bool = False,
              schema: str | None = None, processes: int = 1, workers_in_process: bool = False
              ) -> tuple[int, float, int, float]:
    """(pairs verified, issue + verify seconds, codes issued, fraction of the machine's CPUs
    busy while issuing) through ``otpagent serve``.

    With ``workers`` the server also delivers every code (to the console outbox, where the
    codes are read), in its delivery process or, with ``workers_in_process``, in the server
    process itself; without, the codes are read from the queued messages in the database.
    ``schema``: on PostgreSQL (that schema) instead of SQLite, in ``processes`` processes.
    """
    from otpagent.server.settings import LIMIT_NAMES

    key = "bench-" + secrets.token_hex(16)
    outbox = tmp / "outbox.jsonl"
    server_section = {"api_keys": [key], "limits": LIMITS_ON if limits else dict.fromkeys(LIMIT_NAMES)}
    if schema is None:
        config = agent_config(tmp / "a.db", channels={"DEV": console_channel(outbox=outbox)}, server=server_section)
    else:
        from bench.parts.postgres import pg_config

        config = {**pg_config(schema, outbox=outbox), "server": server_section}
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    port = free_port()
    headers = {"Authorization": f"Bearer {key}"}
    recipients = [phone(7_000_000 + i) for i in range(count)]
    command = [venv_bin("otpagent"), "--config", str(path), "serve", "--port", str(port)]
    if processes > 1:
        command += ["--processes", str(processes)]
    if not workers:
        if schema is not None:
            raise ValueError("--no-workers reads codes from the SQLite file; use workers on PostgreSQL")
        command.append("--no-workers")
    if workers_in_process:
        command.append("--workers-in-process")
    with server(command, port, tmp / "serve.log", readiness=True):
        post_all(port, "/v1/otp", [{"phone_number": phone(6_999_999)}], connections=1, headers=headers)  # warm
        start = time.perf_counter()
        busy = machine_busy()
        issued = post_all(port, "/v1/otp", [{"phone_number": r} for r in recipients], connections=CONNECTIONS,
                          headers=headers, budget=budget)
        issue_seconds = time.perf_counter() - start
        issuing_busy = busy()
        ids = {r[1]["message_id"]: i for i, r in enumerate(issued) if r and r[0] == 202}
        codes: dict[int, str] = {}

        sealer = CodeSealer(BENCH_OTP_SECRET.encode())

        def read_codes() -> bool:
            if not workers:
                with sqlite3.connect(f"file:{tmp / 'a.db'}?mode=ro", uri=True) as db:
                    # With no worker to move them, queued codes wait in ``intake`` (as JSON rows).
                    stored = db.execute("SELECT id, secret FROM messages WHERE message_type = 'otp'").fetchall()
                    stored += [(r.get("id"), r.get("secret")) for (text,) in db.execute("SELECT row FROM intake")
                               for r in (json.loads(text),)]
                    for message_id, secret in stored:
                        if message_id in ids and secret:
                            codes[ids[message_id]] = sealer.open(message_id, secret)
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
    return ok, issue_seconds + verify_seconds, len(ids), issuing_busy


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


def best_pairs(ctx: Context, count: int, budget: float, rounds: int, **options: Any
               ) -> tuple[float, int, int, float]:
    """(pairs/s, verified, issued, machine busy while issuing) of the best of ``rounds`` runs
    (the machine is shared)."""
    value, ok, issued, busy = 0.0, 0, 0, 0.0
    for _ in range(rounds):
        schema = f"bench_{uuid.uuid4().hex[:12]}" if options.get("postgres") else None
        try:
            with ctx.scratch("http-run") as sub:
                round_ok, seconds, round_issued, round_busy = api_pairs(
                    sub, count, budget, workers=options.get("workers", True), limits=options.get("limits", False),
                    schema=schema, processes=options.get("processes", 1),
                    workers_in_process=options.get("workers_in_process", False))
        finally:
            if schema is not None:
                drop(schema)
        if rate(round_ok, seconds) > value:
            value, ok, issued, busy = rate(round_ok, seconds), round_ok, round_issued, round_busy
    return value, ok, issued, busy


def run(ctx: Context) -> list[Row]:
    why = unavailable()
    if why is not None:
        return [Row.unavailable("HTTP API: POST /v1/otp + verify", "pairs/s", ">= 1,000 pairs/s", why)]
    count = ctx.pick(2000, 50)
    budget = ctx.seconds(60, 20)
    rounds = 1 if ctx.quick else 2
    with ctx.scratch("http") as tmp:
        baseline = max(rate(*hello_pairs(tmp, count, budget)) for _ in range(rounds))
    hello = "ASGI hello-world on uvicorn, 2 req/pair"
    rows = []
    shapes: list[tuple[str, str, dict[str, Any]]] = [
        ("HTTP API: POST /v1/otp + verify, SQLite, abuse limits on (serve, workers in its delivery process)",
         ">= 1,000 pairs/s", {"limits": True}),
        ("HTTP API, same, abuse limits off", "— (shows what the limits cost)", {}),
        ("HTTP API, same, limits off, `serve --no-workers` (API alone)", "— (shows the API's own cost)",
         {"workers": False}),
    ]
    for figure, target, options in shapes:
        value, ok, issued, _ = best_pairs(ctx, count, budget, rounds, **options)
        note = "" if ok == count else f"{issued}/{count} issued (202), {ok} verified"
        ctx.say(f"{figure}: {value:,.0f} pairs/s vs hello-world {baseline:,.0f}")
        passed = value >= 1000 and ok == count if target.startswith(">=") else None
        rows.append(Row(figure, value, "pairs/s", target, baseline, hello, passed=passed, note=note))
    one_process = rows[0].value or 0.0  # limits on, the workers in serve's delivery process
    rows.append(sqlite_processes_row(ctx, count, budget, rounds, one_process))
    rows.append(workers_in_process_row(ctx, count, budget, rounds, one_process, "SQLite"))
    rows += postgres_rows(ctx, count, budget, rounds)
    return rows


def workers_in_process_row(ctx: Context, count: int, budget: float, rounds: int, default: float, store: str,
                           **options: Any) -> Row:
    """``serve --workers-in-process`` (the workers as threads of the server process, as before
    the delivery process), limits on, against ``serve`` as it runs by default (``default``)."""
    threads, ok, issued, busy = best_pairs(ctx, count, budget, rounds, limits=True, workers_in_process=True,
                                           **options)
    ctx.say(f"http on {store}: workers in a delivery process {default:,.0f} pairs/s, in the server {threads:,.0f}")
    return Row(f"HTTP API, {store}, abuse limits on, `serve --workers-in-process` (workers in the server process)",
               threads, "pairs/s", "— (what the delivery process gains: the ratio's inverse)", default,
               f"`serve` (its workers in a delivery process), {store}", note=_busy_note(busy, ok, issued, count))


def sqlite_processes_row(ctx: Context, count: int, budget: float, rounds: int, one_process: float) -> Row:
    """``serve --processes 2`` on SQLite, limits on, against the 1-process figure of this run:
    the processes take turns at the one database lock (queued on its lock file)."""
    two, ok, issued, busy = best_pairs(ctx, count, budget, rounds, limits=True, processes=2)
    ctx.say(f"http on SQLite: 1 process {one_process:,.0f} pairs/s, 2 processes {two:,.0f}")
    return Row("HTTP API, SQLite, abuse limits on, `serve --processes 2`", two, "pairs/s",
               "— (one database lock: shows what a second process adds)", one_process,
               "`serve`, 1 process, limits on (row above)", note=_busy_note(busy, ok, issued, count))


def _busy_note(busy: float, ok: int, issued: int, count: int) -> str:
    """How busy the machine was while issuing, and what fell short of ``count`` if anything did."""
    note = f"all {os.cpu_count() or 1} CPUs {busy:.0%} busy while issuing"
    return note if ok == count else f"{note}; {issued}/{count} issued (202), {ok} verified"


def postgres_rows(ctx: Context, count: int, budget: float, rounds: int) -> list[Row]:
    """``serve`` on PostgreSQL with the limits on, in 1 process and in 2 (``--processes 2``)."""
    from bench.parts.postgres import unavailable as postgres_unavailable

    figure = "HTTP API, PostgreSQL, abuse limits on, `serve --processes 2`"
    why = postgres_unavailable()
    if why is not None:
        return [Row.unavailable(figure, "pairs/s", "> 1.0x 1 process", why)]
    one, ok_one, _, busy_one = best_pairs(ctx, count, budget, rounds, limits=True, postgres=True)
    two, ok_two, issued, busy_two = best_pairs(ctx, count, budget, rounds, limits=True, postgres=True, processes=2)
    ctx.say(f"http on PostgreSQL: 1 process {one:,.0f} pairs/s, 2 processes {two:,.0f}")
    # A second process can only add what the machine has left: with the server, PostgreSQL and
    # the load on the same CPUs, say how busy they were.
    cpus = os.cpu_count() or 1
    note = (f"all {cpus} CPUs {busy_one:.0%} busy while issuing with 1 process, {busy_two:.0%} with 2 "
            "(server, PostgreSQL and load generator share them)")
    if ok_two != count:
        note += f"; {issued}/{count} issued (202), {ok_two} verified"
    if ok_one != count:
        note += f"; 1 process: {ok_one}/{count} verified"
    return [Row(figure, two, "pairs/s", "> 1.0x 1 process (scales with --processes)", one,
                "`serve`, 1 process, same config", passed=two > one and ok_two == count, note=note),
            workers_in_process_row(ctx, count, budget, rounds, one, "PostgreSQL", postgres=True)]
