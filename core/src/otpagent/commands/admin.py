"""Running and looking after an installation: ``run``, ``load``, ``cleanup``, ``plugins``,
``config check`` and ``demo``."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from otpagent.commands.common import ExitCode, friendly_errors, json_option, open_agent, print_json
from otpagent.gcsettle import settle

__all__ = ["cleanup", "config_group", "demo", "load", "plugins", "run"]


@click.command()
@click.pass_context
@friendly_errors
def run(ctx: click.Context) -> None:
    """Work the queue until SIGINT or SIGTERM, then finish in-flight sends and exit."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from otpagent.tracing_sdk import configure_sdk

    with open_agent(ctx) as agent, contextlib.ExitStack() as delivery:
        configure_sdk(agent.tracing)  # tracing.enabled: spans exported as OTEL_* say
        settle()  # a long-running process of ours: the collector tuned for it (otpagent.gcsettle)
        parent = _as_delivery_process(agent, delivery)
        agent.start_processing()
        click.echo(f"otpagent worker {agent.dispatcher.worker_id} running; Ctrl-C to stop", err=True)
        while not stop.wait(0.5):
            if parent():
                click.echo("the serve that started this worker is gone", err=True)
                break
        click.echo("stopping: finishing in-flight sends...", err=True)
    click.echo("stopped", err=True)


def _as_delivery_process(agent: Any, stack: contextlib.ExitStack) -> Callable[[], bool]:
    """When ``serve`` started this process to deliver (otpagent.server.delivery): serve its own
    figures to the API (until ``stack`` closes) and say whether serve is gone. Else nothing."""
    from otpagent.server.delivery_env import PARENT_ENV, PORT_FILE_ENV

    port_file, parent = os.environ.get(PORT_FILE_ENV), os.environ.get(PARENT_ENV)
    if not port_file:
        return lambda: False
    from otpagent.server.delivery import export_process_metrics, parent_gone

    serve_pid = int(parent) if parent and parent.isdigit() else None

    def tidy() -> None:  # a serve that was killed cannot remove the directory it made for us
        if parent_gone(serve_pid):
            with contextlib.suppress(OSError):
                Path(port_file).parent.rmdir()

    stack.callback(tidy)
    stack.callback(export_process_metrics(agent, Path(port_file)))  # closes first: the port file goes
    return lambda: parent_gone(serve_pid)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--load-id", help="Name this load (default: a digest of the file): rows already queued under it are "
                                "not queued again.")
@json_option()
@click.pass_context
@friendly_errors
def load(ctx: click.Context, file: str, load_id: str | None, as_json: bool) -> None:
    """Queue every message of a JSON FILE: validated whole, then queued in one transaction.

    The file holds a list of message objects, or {"messages": [...]} (docs/messages.md). Running
    the same file again queues nothing twice.
    """
    from otpagent.loading import load_file

    with open_agent(ctx) as agent:
        result = load_file(agent, file, load_id)
    if as_json:
        print_json({"file": file, "load_id": result.load_id, "queued": result.created,
                    "already_queued": result.already_queued, "message_ids": list(result.message_ids)})
    else:
        click.echo(f"queued {result.created} messages from {file}"
                   + (f" ({result.already_queued} were queued already)" if result.already_queued else ""))


@click.command()
@click.option("--older-than-days", type=click.FloatRange(min=0), help="Default: cleanup.retain_days from the config.")
@json_option()
@click.pass_context
@friendly_errors
def cleanup(ctx: click.Context, older_than_days: float | None, as_json: bool) -> None:
    """Delete finished messages, attempts, events and used codes older than the retention."""
    with open_agent(ctx) as agent:
        days = agent.config.cleanup.retain_days if older_than_days is None else older_than_days
        now = time.time()
        counts = dict(agent.capabilities.housekeeping.cleanup(now - days * 86400.0, now))
    if as_json:
        print_json({"older_than_days": days, "deleted": counts})
    else:
        click.echo(", ".join(f"{table}: {n}" for table, n in counts.items()) + f" (older than {days:g} days)")


@click.command()
@json_option("Print the list as JSON.")
@click.option("--check", is_flag=True, help="Exit with status 1 when a plugin failed to load or two plugins "
                                            "register the same name.")
def plugins(as_json: bool, check: bool) -> None:
    """List installed plugins, what each registers, and which failed to load and why."""
    from otpagent.plugins import describe_plugins

    rows = describe_plugins()
    if as_json:
        print_json(rows)
    else:
        _print_plugin_table(rows)
    failed = sum(1 for row in rows if row["status"] == "failed")
    clashes = {message for row in rows for message in row.get("clashes", ())}
    if failed or clashes:
        click.echo(f"{failed} plugin(s) failed to load, {len(clashes)} name clash(es)", err=True)
        if check:
            sys.exit(ExitCode.NEGATIVE)


#: Short names for the kinds of things a plugin registers, so the table fits 80 columns.
_KIND_LABELS = {"routing_strategies": "strategies", "storage_backends": "storage", "event_sinks": "sinks",
                "http_routes": "routes"}


def _print_plugin_table(rows: list[dict[str, Any]]) -> None:
    """The table, then each failure and clash in full on its own line (a table cell would wrap)."""
    from otpagent.extras import require

    require("cli", "otpagent plugins' table")
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="otpagent plugins", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("plugin · package version", no_wrap=True, overflow="ellipsis", max_width=34)
    table.add_column("registers", ratio=1)
    table.add_column("status", no_wrap=True)
    for row in rows:
        registers = "\n".join(f"{_KIND_LABELS.get(k, k)}: {', '.join(v)}" for k, v in row["registers"].items()) or "-"
        status = "ok"
        if row["status"] == "failed":
            status = "[bold red]FAILED[/]"
        elif row.get("clashes"):
            status = "[bold red]CLASH[/]"
        origin = f"{escape(row['name'])}\n[dim]{escape(row['package'])} {escape(str(row['version']))}[/]"
        table.add_row(origin, escape(registers), status)
    Console().print(table)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        click.echo("\nFailed to load (not used):")
        for r in failed:
            click.echo(f"  {r['name']} ({r['package']} {r['version']}) failed while {r['phase']}: {r['error']} "
                       f"(at {r['where']})")
    clashes = sorted({message for row in rows for message in row.get("clashes", ())})
    if clashes:
        click.echo("\nName clashes (each name is unusable until one plugin goes):")
        for message in clashes:
            click.echo(f"  {message}")


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@json_option()
@click.pass_context
@friendly_errors
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Validate the config and build every plugin it names (no message is sent).

    Fails when the config needs a plugin that failed to load, when a factory returns something
    that is not what its protocol says, and when two plugins register the same name.
    """
    from otpagent.agent import IntelligentOTPAgent
    from otpagent.plugins import build_registry

    registry = build_registry(warn=False)  # reported below, not as warnings
    with IntelligentOTPAgent((ctx.find_root().obj or {}).get("config"), registry=registry) as agent:
        channels = [{"name": n, "plugin": c.plugin, "kind": agent.channels[n].kind, "enabled": c.enabled}
                    for n, c in agent.channel_configs.items()]
        result: dict[str, Any] = {"ok": not registry.clashes, "storage": agent.storage.name,
                                  "routing": agent.config.routing.get("strategy"), "channels": channels,
                                  "unused_plugin_failures": [f.describe() for f in registry.failures],
                                  "clashes": [c.message for c in registry.clashes]}
    if as_json:
        print_json(result)
    else:
        for failure in result["unused_plugin_failures"]:
            click.echo(f"warning: {failure}; this config does not use it", err=True)
        for clash in result["clashes"]:
            click.echo(f"error: {clash}", err=True)
        if result["ok"]:
            names = ", ".join(f"{c['name']} ({c['plugin']})" for c in channels)
            click.echo(f"config OK: storage {result['storage']}, routing {result['routing']}, channels {names}")
    if not result["ok"]:
        sys.exit(ExitCode.BAD_INPUT)


@config_group.command("schema")
@friendly_errors
def config_schema_command() -> None:
    """Print the JSON Schema of config.json (the core and every loaded plugin that describes its keys).

    Save it beside the config and name it in "$schema" so an editor completes and checks keys.
    """
    from otpagent.config_schema import config_schema
    from otpagent.plugins import build_registry

    print_json(config_schema(build_registry(warn=False)))


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's database and outbox (printed at the end).")
@friendly_errors
def demo(keep: bool) -> None:
    """Run the whole product once on the embedded default (SQLite + console channels)."""
    from otpagent.demo import run_demo

    run_demo(keep=keep)
