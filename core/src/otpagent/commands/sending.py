"""``otpagent send``, ``otpagent otp send`` and ``otpagent otp verify``.

``send`` and ``otp send`` queue the message and print its id. With ``--wait`` they see it
through: when no worker of the fleet is alive this process delivers it (see
:mod:`otpagent.waiting`), otherwise it waits for a worker; then it prints the final status and
which of the two happened. While this process delivers, anything a channel prints (the
console channel's lines) goes to stderr, so stdout holds only the result.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from otpagent.commands.common import ExitCode, fail, friendly_errors, json_option, open_agent, print_json

__all__ = ["otp", "send"]

#: ``--wait`` with no value waits this long.
DEFAULT_WAIT_SECONDS = 60.0
_GOOD = frozenset({"sent", "delivered", "read"})


def _wait_seconds(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """``--wait``'s seconds; says how to write it when the next word was taken for its value."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter(f"takes a number of seconds, got {value!r}: write --wait=SECONDS, or put --wait "
                                 "after the message text") from None
    if not 0 < seconds <= 86400:
        raise click.BadParameter(f"must be more than 0 and at most 86400 seconds, got {value!r}")
    return seconds


def wait_option(func: Any) -> Any:
    return click.option(
        "--wait", "wait", is_flag=False, flag_value=f"{DEFAULT_WAIT_SECONDS:g}", default=None,
        callback=_wait_seconds, metavar="[SECONDS]",
        help=f"See it through (default {DEFAULT_WAIT_SECONDS:g} s): deliver it in this process when no worker "
             "is running, else wait for one; then print the final status.")(func)


def _queued(agent: Any, message_id: str, as_json: bool) -> None:
    message = agent.storage.get_message(message_id)
    status = message.status.value if message is not None else "queued"
    if as_json:
        print_json({"message_id": message_id, "status": status})
    else:
        click.echo(message_id)


def _see_through(agent: Any, message_id: str, seconds: float, as_json: bool) -> None:
    """Wait (delivering here when nobody else can), print the outcome, exit with its status."""
    from otpagent.waiting import wait_for_delivery

    if not as_json:
        click.echo(message_id)
    with contextlib.redirect_stdout(sys.stderr):  # a channel's own prints stay off the result
        result = wait_for_delivery(agent, message_id, seconds)
    m = result.message
    if m is None:
        fail(ExitCode.NEGATIVE, "not_found", f"message {message_id} is gone (deleted by cleanup?)", as_json=as_json)
    status = m.status.value
    attempts = agent.storage.get_attempts(message_id)
    by = {"this_process": "handled by this process: no worker was running",
          "another_process": "no worker was running; another process working the queue meanwhile took it",
          "worker": "handled by a running worker" + (f" ({result.workers_seen[0]})" if result.workers_seen else "")}
    if as_json:
        print_json({"message_id": message_id, "status": status, "finished": result.finished,
                    "channel": m.channel, "attempts": len(attempts), "last_error": m.last_error or None,
                    "delivered_by": result.handled_by if result.finished else None,
                    "worked_in_this_process": result.worked_here, "workers_seen": list(result.workers_seen),
                    "waited_seconds": round(result.seconds, 3)})
    elif result.finished:
        via = f" via {m.channel}" if m.channel else ""
        error = f": {m.last_error}" if m.last_error and status not in _GOOD else ""
        click.echo(f"{status}{via} after {len(attempts)} attempt(s) in {result.seconds:.1f} s{error} "
                   f"({by[result.handled_by]})")
    else:
        who = "this process worked the queue meanwhile" if result.worked_here else "waiting for a running worker"
        click.echo(f"still {status} after {result.seconds:.0f} s ({who}); it stays queued and the next worker "
                   "delivers it (otpagent run)", err=True)
    if not result.finished:
        sys.exit(ExitCode.NOT_FINISHED)
    sys.exit(ExitCode.OK if status in _GOOD else ExitCode.NEGATIVE)


@click.command()
@click.option("--to", "phone", help="Phone number (E.164).")
@click.option("--email", help="Email address.")
@click.option("--type", "message_type", default="notification", show_default=True,
              type=click.Choice(["alert", "notification", "reminder"]))
@click.option("--priority", default="MEDIUM", show_default=True,
              type=click.Choice(["LOW", "MEDIUM", "HIGH", "CRITICAL"], case_sensitive=False))
@click.option("--at", "scheduled_for", help="Send later: ISO 8601 date-time.")
@click.option("--channel", "channels", multiple=True, help="Restrict to these channels (repeatable).")
@click.option("--idempotency-key", help="Same key returns the same message id.")
@wait_option
@json_option()
@click.argument("content")
@click.pass_context
@friendly_errors
def send(ctx: click.Context, phone: str | None, email: str | None, message_type: str, priority: str,
         scheduled_for: str | None, channels: tuple[str, ...], idempotency_key: str | None, wait: float | None,
         as_json: bool, content: str) -> None:
    """Queue one message and print its id; with --wait, see it delivered."""
    from otpagent.model import MessageRequest

    with open_agent(ctx) as agent:
        message_id = agent.send_message(MessageRequest(
            phone_number=phone, email=email, message_type=message_type, content=content, priority=priority,
            scheduled_for=scheduled_for, channels=channels or None, idempotency_key=idempotency_key,
        ))
        if wait is None:
            _queued(agent, message_id, as_json)
        else:
            _see_through(agent, message_id, wait, as_json)


@click.group()
def otp() -> None:
    """Issue and verify one-time passcodes."""


@otp.command("send")
@click.argument("recipient")
@click.option("--user-id", help="Your user's id, kept with the message.")
@click.option("--purpose", default="login", show_default=True)
@click.option("--channel", "channels", multiple=True, help="Restrict to these channels (repeatable).")
@wait_option
@json_option()
@click.pass_context
@friendly_errors
def otp_send(ctx: click.Context, recipient: str, user_id: str | None, purpose: str, channels: tuple[str, ...],
             wait: float | None, as_json: bool) -> None:
    """Send a new code to RECIPIENT (phone number or email) and print the message id; with
    --wait, see it delivered."""
    with open_agent(ctx) as agent:
        kwargs: dict[str, Any] = {"email": recipient} if "@" in recipient else {"phone_number": recipient}
        message_id = agent.send_otp(**kwargs, user_id=user_id, purpose=purpose, channels=channels or None)
        if wait is None:
            _queued(agent, message_id, as_json)
        else:
            _see_through(agent, message_id, wait, as_json)


@otp.command("verify")
@click.argument("recipient")
@click.argument("code")
@click.option("--purpose", default="login", show_default=True)
@json_option()
@click.pass_context
@friendly_errors
def otp_verify(ctx: click.Context, recipient: str, code: str, purpose: str, as_json: bool) -> None:
    """Check CODE for RECIPIENT; exit status 0 when verified, 1 when not."""
    with open_agent(ctx) as agent:
        ok, reason = agent.verify_otp(recipient, code, purpose=purpose)
    if as_json:
        print_json({"verified": ok, "reason": reason})
    else:
        click.echo(reason)
    sys.exit(ExitCode.OK if ok else ExitCode.NEGATIVE)
