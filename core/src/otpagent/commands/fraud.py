"""``otpagent fraud status`` and ``otpagent fraud release PREFIX``: the fraud guard's view and
its override (docs/fraud.md)."""

from __future__ import annotations

import time
from typing import Any

import click

from otpagent.commands.common import ExitCode, fail, friendly_errors, json_option, open_agent, print_json

__all__ = ["fraud"]


@click.group()
def fraud() -> None:
    """The SMS-pumping guard: what it tracks and holds, and releasing a held prefix."""


@fraud.command("status")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rows to show (held prefixes first, then by volume).")
@json_option("Print every tracked prefix and country as JSON.")
@click.pass_context
@friendly_errors
def fraud_status(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Prefixes held now, and each prefix's and country's counts over the window (fleet-wide)."""
    with open_agent(ctx) as agent:
        rows = agent.fraud_status()
        window = agent.config.otp.fraud_guard.window_seconds
    if as_json:
        print_json([_row(r) for r in rows])
        return
    held = [r for r in rows if r.held_until is not None]
    click.echo(f"{len(held)} prefix(es) held; counts over the last {window / 60:g} min")
    click.echo(f"{'prefix':<14} {'country':<7} {'sent':>6} {'verified':>8} {'refused':>7} {'conv':>5} "
               f"{'usual':>5}  held")
    now = time.time()
    for r in rows[:limit]:
        conv = "-" if r.conversion is None else f"{r.conversion:.0%}"
        usual = "-" if r.baseline_conversion is None else f"{r.baseline_conversion:.0%}"
        until = f"{(r.held_until - now) / 60:.0f} min more: {r.reason}" if r.held_until is not None else ""
        click.echo(f"{r.prefix or '(country)':<14} {r.country or '?':<7} {r.sent:>6} {r.verified:>8} "
                   f"{r.refused:>7} {conv:>5} {usual:>5}  {until}".rstrip())


def _row(r: Any) -> dict[str, Any]:
    return {"prefix": r.prefix, "country": r.country, "held_until": r.held_until, "reason": r.reason,
            "sent": r.sent, "verified": r.verified, "refused": r.refused, "conversion": r.conversion,
            "baseline_conversion": r.baseline_conversion, "baseline_per_hour": round(r.baseline_per_hour, 3)}


@fraud.command("release")
@click.argument("prefix")
@json_option()
@click.pass_context
@friendly_errors
def fraud_release(ctx: click.Context, prefix: str, as_json: bool) -> None:
    """Release PREFIX (e.g. +447700): OTPs to it flow again at once, and the guard leaves it alone
    for otp.fraud_guard.release_grace_seconds. Exit status 1 when it was not held."""
    with open_agent(ctx) as agent:
        was_held = agent.release_prefix(prefix)
    if not was_held:
        fail(ExitCode.NEGATIVE, "not_held", f"{prefix} was not held", as_json=as_json, prefix=prefix)
    if as_json:
        print_json({"prefix": prefix, "released": True})
    else:
        click.echo(f"released {prefix}")
