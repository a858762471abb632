"""``otpagent status`` (one message) and ``otpagent stats`` (the fleet's figures)."""

from __future__ import annotations

import click

from otpagent.commands.common import ExitCode, fail, friendly_errors, json_option, open_agent, print_json

__all__ = ["stats", "status"]


@click.command()
@click.argument("message_id")
@json_option("Print the report as JSON.")
@click.pass_context
@friendly_errors
def status(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """Show the delivery report of MESSAGE_ID (exit status 1 when there is no such message)."""
    with open_agent(ctx) as agent:
        report = agent.get_delivery_report(message_id)
    if report is None:
        fail(ExitCode.NEGATIVE, "not_found", f"no message with id {message_id!r}", as_json=as_json)
    if as_json:
        print_json(report.to_dict())
    else:
        from otpagent.reporting import print_report

        print_report(report)


@click.command()
@json_option("Print the metrics as JSON (the figures of get_metrics()).")
@click.pass_context
@friendly_errors
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show queue, messages and attempts of the whole fleet (from storage) and per channel."""
    with open_agent(ctx) as agent:
        metrics = agent.get_metrics()
    if as_json:
        print_json(metrics)
    else:
        from otpagent.reporting import print_metrics

        print_metrics(metrics)
