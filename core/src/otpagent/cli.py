"""The ``otpagent`` command line. Errors print one clear line and exit non-zero, no traceback."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from otpagent.errors import InvalidRequest, OtpagentError
from otpagent.logs import configure_cli_logging

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn the errors we raise on purpose into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidRequest as exc:
            lines = [str(e) for e in exc.errors]
            click.echo(f"error: invalid input: {'; '.join(lines)}", err=True)
            sys.exit(2)
        except OtpagentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _agent(ctx: click.Context) -> Any:
    from otpagent.agent import IntelligentOTPAgent

    return IntelligentOTPAgent(ctx.obj.get("config"))


@click.group()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False), envvar="OTPAGENT_CONFIG",
              help="config.json to use (default: $OTPAGENT_CONFIG, else ./config.json, else the embedded "
                   "SQLite + console setup).")
@click.option("--log-level", default="warning",
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Level of otpagent's own log lines (stderr).")
@click.version_option(package_name="otpagent")
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_level: str) -> None:
    """otpagent: deliver OTPs, alerts, notifications and reminders with routing and fallback."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    configure_cli_logging(log_level)
    if ctx.invoked_subcommand not in _REPORTS_PLUGIN_PROBLEMS:
        _warn_about_broken_plugins()


#: Commands that report broken plugins themselves instead of as warning lines.
_REPORTS_PLUGIN_PROBLEMS = frozenset({"plugins", "config"})


def _warn_about_broken_plugins() -> None:
    """One warning line on stderr per plugin that failed and per name clash (through logging,
    so ``--log-level error`` silences them); the command itself goes on."""
    from otpagent.plugins import build_registry

    build_registry(warn=True)


@cli.command()
@click.pass_context
@friendly_errors
def run(ctx: click.Context) -> None:
    """Work the queue until SIGINT or SIGTERM, then finish in-flight sends and exit."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with _agent(ctx) as agent:
        agent.start_processing()
        click.echo(f"otpagent worker {agent.dispatcher.worker_id} running; Ctrl-C to stop", err=True)
        while not stop.wait(0.5):
            pass
        click.echo("stopping: finishing in-flight sends...", err=True)
    click.echo("stopped", err=True)


@cli.command()
@click.option("--to", "phone", help="Phone number (E.164).")
@click.option("--email", help="Email address.")
@click.option("--type", "message_type", default="notification", show_default=True,
              type=click.Choice(["alert", "notification", "reminder"]))
@click.option("--priority", default="MEDIUM", show_default=True,
              type=click.Choice(["LOW", "MEDIUM", "HIGH", "CRITICAL"], case_sensitive=False))
@click.option("--at", "scheduled_for", help="Send later: ISO 8601 date-time.")
@click.option("--channel", "channels", multiple=True, help="Restrict to these channels (repeatable).")
@click.option("--idempotency-key", help="Same key returns the same message id.")
@click.argument("content")
@click.pass_context
@friendly_errors
def send(ctx: click.Context, phone: str | None, email: str | None, message_type: str, priority: str,
         scheduled_for: str | None, channels: tuple[str, ...], idempotency_key: str | None, content: str) -> None:
    """Queue one message; prints its id."""
    from otpagent.model import MessageRequest

    with _agent(ctx) as agent:
        message_id = agent.send_message(MessageRequest(
            phone_number=phone, email=email, message_type=message_type, content=content, priority=priority,
            scheduled_for=scheduled_for, channels=channels or None, idempotency_key=idempotency_key,
        ))
    click.echo(message_id)


@cli.group()
def otp() -> None:
    """Issue and verify one-time passcodes."""


@otp.command("send")
@click.argument("recipient")
@click.option("--user-id", help="Your user's id, kept with the message.")
@click.option("--purpose", default="login", show_default=True)
@click.option("--channel", "channels", multiple=True, help="Restrict to these channels (repeatable).")
@click.pass_context
@friendly_errors
def otp_send(ctx: click.Context, recipient: str, user_id: str | None, purpose: str, channels: tuple[str, ...]) -> None:
    """Send a new code to RECIPIENT (phone number or email); prints the message id."""
    with _agent(ctx) as agent:
        kwargs: dict[str, Any] = {"email": recipient} if "@" in recipient else {"phone_number": recipient}
        message_id = agent.send_otp(**kwargs, user_id=user_id, purpose=purpose, channels=channels or None)
    click.echo(message_id)


@otp.command("verify")
@click.argument("recipient")
@click.argument("code")
@click.option("--purpose", default="login", show_default=True)
@click.pass_context
@friendly_errors
def otp_verify(ctx: click.Context, recipient: str, code: str, purpose: str) -> None:
    """Check CODE for RECIPIENT; exit status 0 when verified, 1 when not."""
    with _agent(ctx) as agent:
        ok, reason = agent.verify_otp(recipient, code, purpose=purpose)
    click.echo(reason)
    sys.exit(0 if ok else 1)


@cli.command()
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@friendly_errors
def status(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """Show the delivery report of MESSAGE_ID."""
    from otpagent.reporting import print_report

    with _agent(ctx) as agent:
        report = agent.get_delivery_report(message_id)
    if report is None:
        raise click.ClickException(f"no message with id {message_id!r}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.pass_context
@friendly_errors
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show queue size, success rate and per-channel performance."""
    from otpagent.reporting import print_metrics

    with _agent(ctx) as agent:
        metrics = agent.get_metrics()
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=str))
    else:
        print_metrics(metrics)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
@friendly_errors
def load(ctx: click.Context, file: str) -> None:
    """Queue every message of a JSON FILE (validated whole first: all or nothing)."""
    from otpagent.extras import require
    from otpagent.intake import load_json_requests

    require("cli", "otpagent load's progress bar")
    from rich.progress import Progress

    from otpagent.model import MessageType

    requests = load_json_requests(file)
    with _agent(ctx) as agent, Progress(transient=False) as progress:
        task = progress.add_task(f"queueing {Path(file).name}", total=len(requests))
        plain = [r for r in requests if r.message_type is not MessageType.OTP]
        for start in range(0, len(plain), 500):
            chunk = plain[start:start + 500]
            agent.send_bulk_messages(chunk)
            progress.advance(task, len(chunk))
        for r in (r for r in requests if r.message_type is MessageType.OTP):
            agent.send_otp(r.phone_number, email=r.email, user_id=r.user_id, channels=r.channels, priority=r.priority)
            progress.advance(task)
    click.echo(f"queued {len(requests)} messages from {file}")


@cli.command()
@click.option("--older-than-days", type=float, help="Default: cleanup.retain_days from the config.")
@click.pass_context
@friendly_errors
def cleanup(ctx: click.Context, older_than_days: float | None) -> None:
    """Delete finished messages, attempts, events and used codes older than the retention."""
    with _agent(ctx) as agent:
        days = agent.config.cleanup.retain_days if older_than_days is None else older_than_days
        now = time.time()
        counts = agent.capabilities.housekeeping.cleanup(now - days * 86400.0, now)
    click.echo(", ".join(f"{table}: {n}" for table, n in counts.items()) + f" (older than {days:g} days)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.option("--check", is_flag=True, help="Exit with status 1 when a plugin failed to load or two plugins "
                                            "register the same name.")
def plugins(as_json: bool, check: bool) -> None:
    """List installed plugins, what each registers, and which failed to load and why."""
    from otpagent.plugins import describe_plugins

    rows = describe_plugins()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_plugin_table(rows)
    failed = sum(1 for row in rows if row["status"] == "failed")
    clashes = {message for row in rows for message in row.get("clashes", ())}
    if failed or clashes:
        click.echo(f"{failed} plugin(s) failed to load, {len(clashes)} name clash(es)", err=True)
        if check:
            sys.exit(1)


def _print_plugin_table(rows: list[dict[str, Any]]) -> None:
    """The table, then each failure and clash in full on its own line (a table cell would wrap)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="otpagent plugins")
    for column in ("plugin", "package", "version", "registers", "status"):
        table.add_column(column)
    for row in rows:
        registers = "\n".join(f"{k}: {', '.join(v)}" for k, v in row["registers"].items()) or "-"
        status = "ok"
        if row["status"] == "failed":
            status = "[bold red]FAILED[/]"
        elif row.get("clashes"):
            status = "[bold red]CLASH[/]"
        table.add_row(escape(row["name"]), escape(row["package"]), row["version"], escape(registers), status)
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


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.pass_context
@friendly_errors
def config_check(ctx: click.Context) -> None:
    """Validate the config and build every plugin it names (no message is sent).

    Fails when the config needs a plugin that failed to load, when a factory returns something
    that is not what its protocol says, and when two plugins register the same name.
    """
    from otpagent.agent import IntelligentOTPAgent
    from otpagent.plugins import build_registry

    registry = build_registry(warn=False)  # reported below, not as warnings
    with IntelligentOTPAgent(ctx.obj.get("config"), registry=registry) as agent:
        names = ", ".join(f"{n} ({c.plugin})" for n, c in agent.channel_configs.items())
        summary = (f"config OK: storage {agent.storage.name}, routing {agent.config.routing.get('strategy')}, "
                   f"channels {names}")
    for failure in registry.failures:
        click.echo(f"warning: {failure.describe()}; this config does not use it", err=True)
    if registry.clashes:
        for clash in registry.clashes:
            click.echo(f"error: {clash.message}", err=True)
        sys.exit(2)
    click.echo(summary)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's database and outbox (printed at the end).")
@friendly_errors
def demo(keep: bool) -> None:
    """Run the whole product once on the embedded default (SQLite + console channels)."""
    from otpagent.demo import run_demo

    run_demo(keep=keep)


def _register_plugin_commands() -> None:
    from otpagent.plugin_loading import add_plugin_commands

    add_plugin_commands(cli)  # a plugin that raises here is reported like one that fails to import


def main() -> None:
    _register_plugin_commands()
    cli(prog_name="otpagent")


if __name__ == "__main__":
    main()
