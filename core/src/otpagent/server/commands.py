"""``otpagent serve`` and ``otpagent webhooks list|retry|replay``.

Starlette and uvicorn are imported inside ``serve`` only, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from otpagent.cli import friendly_errors

__all__ = ["serve", "webhooks"]


def _agent(ctx: click.Context) -> Any:
    from otpagent.agent import IntelligentOTPAgent

    return IntelligentOTPAgent((ctx.find_root().obj or {}).get("config"))


@click.command()
@click.option("--host", help="Address to listen on (default: server.host, else 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: server.port, else 8080).")
@click.option("--no-workers", is_flag=True, help="Serve the API only; run the workers with `otpagent run`.")
@click.option("--workers-in-process", is_flag=True,
              help="Run the workers in the server process (as threads) rather than in a delivery process of "
                   "their own.")
@click.option("--processes", type=click.IntRange(1, 64),
              help="Server processes sharing the port (default: server.processes, else 1).")
@click.pass_context
@friendly_errors
def serve(ctx: click.Context, host: str | None, port: int | None, no_workers: bool, workers_in_process: bool,
          processes: int | None) -> None:
    """Run the HTTP service: REST API, dashboard, /metrics, provider callbacks, and the workers
    (in a delivery process of their own unless told otherwise)."""
    from otpagent.extras import require

    require("server", "otpagent serve")
    if no_workers and workers_in_process:
        raise click.UsageError("--no-workers and --workers-in-process exclude each other")
    import uvicorn

    from otpagent.gcsettle import settle
    from otpagent.server import create_app, parse_server_settings
    from otpagent.server.delivery import DeliveryProcess
    from otpagent.server.process import CONFIG_ENV, LOG_LEVEL_ENV, WORKERS_ENV
    from otpagent.tracing_sdk import configure_sdk

    root = ctx.find_root()
    config = (root.obj or {}).get("config")
    config_path = str(Path(config).resolve()) if config else None
    log_level = str(root.params.get("log_level") or "warning")
    with _agent(ctx) as agent:
        configure_sdk(agent.tracing)  # tracing.enabled: spans exported as OTEL_* say
        settings = parse_server_settings(agent.config.server, run_workers=workers_in_process)
        count = processes or settings.processes
        delivery = None if no_workers or workers_in_process else DeliveryProcess(
            [*(["--config", config_path] if config_path else []), "--log-level", log_level])
        bind_host, bind_port = host or settings.host, settings.port if port is None else port
        app: Any = (create_app(agent, settings, delivery=delivery.link if delivery else None) if count == 1
                    else "otpagent.server.process:app_from_environment")
        if count > 1:  # each process builds its own agent; this one only checked the config
            agent.close()
            if config_path:
                os.environ[CONFIG_ENV] = config_path
            os.environ[WORKERS_ENV] = "1" if workers_in_process else "0"
            os.environ[LOG_LEVEL_ENV] = log_level
            os.environ.update(delivery.environment() if delivery else {})
        workers = ("API only" if no_workers else "workers in a delivery process" if delivery
                   else "workers in each process" if count > 1 else "workers in the process")
        click.echo(f"otpagent serving on http://{bind_host}:{bind_port} ({workers}"
                   f"{f', {count} processes' if count > 1 else ''}); Ctrl-C to stop", err=True)
        # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
        # place that ends here, so the agent below is closed (sinks flushed) before we exit 0.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: None)
        if count == 1:
            settle()  # the collector tuned for a long-running process (with N, each process does)
        if delivery is not None:
            delivery.start()
        try:
            uvicorn.run(app, host=bind_host, port=bind_port, proxy_headers=True, factory=count > 1,
                        workers=count if count > 1 else None, forwarded_allow_ips=settings.trusted_proxies,
                        server_header=False, lifespan="on", access_log=False, timeout_graceful_shutdown=10,
                        log_level="warning")
        finally:
            click.echo("stopping: finishing in-flight sends...", err=True)
            if delivery is not None:  # after the API: what its last requests queued is in the queue
                cfg = agent.config.dispatcher  # its sends finish, or are abandoned at their deadline
                delivery.stop(cfg.channel_timeout_seconds + cfg.channel_timeout_grace_seconds + 10)
    click.echo("stopped", err=True)


@click.group()
def webhooks() -> None:
    """Inspect and drive the outgoing webhook outbox."""


def _outbox(agent: Any) -> Any:
    from otpagent.protocols import Capability
    from otpagent.storage.capabilities import require

    outboxes = require(agent.storage, Capability.WEBHOOK_OUTBOXES, config_path="storage.backend",
                       needed_by="`otpagent webhooks`")
    return outboxes.webhook_outbox()


def _sinks(agent: Any, endpoint: str | None) -> list[Any]:
    from otpagent.sinks.webhook import WebhookSink

    found = [s for s in agent.bus.sinks if isinstance(s, WebhookSink) and endpoint in (None, s.endpoint)]
    if not found:
        raise click.ClickException("no webhook sink is configured" + (f" with name {endpoint!r}" if endpoint else ""))
    return found


@webhooks.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]), help="Only these.")
@click.option("--endpoint", help="Only this endpoint (its name, or its URL when unnamed).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
@friendly_errors
def list_deliveries(ctx: click.Context, status: str | None, endpoint: str | None, limit: int, as_json: bool) -> None:
    """Show recent deliveries, newest first."""
    from otpagent.protocols import DeliveryStatus

    with _agent(ctx) as agent:
        rows = _outbox(agent).list(endpoint=endpoint, status=DeliveryStatus(status) if status else None, limit=limit)
    for d in rows:
        if as_json:
            click.echo(json.dumps({"id": d.id, "endpoint": d.endpoint, "webhook_id": d.webhook_id,
                                   "type": d.event_type, "status": d.status.value, "attempts": d.attempts,
                                   "next_attempt_at": d.next_attempt_at, "last_error": d.last_error}))
        else:
            when = datetime.fromtimestamp(d.next_attempt_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{d.id:>6}  {d.status.value:<9} {d.event_type:<12} attempts={d.attempts:<3} "
                       f"next={when}  {d.endpoint}  {d.last_error or ''}")
    if not rows and not as_json:
        click.echo("no deliveries")


@webhooks.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--endpoint", help="Only this endpoint.")
@click.pass_context
@friendly_errors
def retry(ctx: click.Context, ids: tuple[int, ...], endpoint: str | None) -> None:
    """Send dead-lettered deliveries again (all of them, or only IDS), with a fresh retry cycle."""
    with _agent(ctx) as agent:
        count = _outbox(agent).retry_dead(time.time(), endpoint=endpoint, ids=list(ids) or None)
    click.echo(f"{count} deliveries queued again")


@webhooks.command("replay")
@click.option("--since", required=True, help="ISO 8601 date-time, or a duration ago such as 30m, 6h, 2d.")
@click.option("--endpoint", help="Only this endpoint.")
@click.pass_context
@friendly_errors
def replay(ctx: click.Context, since: str, endpoint: str | None) -> None:
    """Deliver again every stored event since a time (each endpoint's event filter applies)."""
    start = _parse_since(since)
    with _agent(ctx) as agent:
        outbox = _outbox(agent)
        total = sum(outbox.replay(s.endpoint, s.settings.events, start, time.time()) for s in _sinks(agent, endpoint))
    click.echo(f"{total} deliveries queued for replay")


def _parse_since(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time() - seconds
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use an ISO 8601 date-time or a duration such as 30m, 6h, 2d",
                                 param_hint="--since") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
