"""The ``otpagent`` command line: the root group, its global options, and every command.

The commands live in :mod:`otpagent.commands` (one module per job) and in plugins (through
the ``otpagent_register_commands`` hook). Errors print one clear line and exit with a status
that says what happened (:class:`~otpagent.commands.common.ExitCode`, docs/cli.md), never a
traceback. Shell completion comes from click: ``eval "$(_OTPAGENT_COMPLETE=bash_source otpagent)"``.
"""

from __future__ import annotations

import click

from otpagent.commands.admin import cleanup, config_group, demo, load, plugins, run
from otpagent.commands.common import ExitCode, friendly_errors
from otpagent.commands.fraud import fraud
from otpagent.commands.reports import stats, status
from otpagent.commands.sending import otp, send
from otpagent.logs import configure_cli_logging

__all__ = ["ExitCode", "cli", "friendly_errors", "main", "otp"]


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
    """otpagent: deliver OTPs, alerts, notifications and reminders with routing and fallback.

    Exit status: 0 done, 1 a negative answer (wrong code, failed message, not found), 2 bad
    input or config (or a missing extra), 3 unavailable (store unreachable, rate limited),
    4 --wait ran out before the message finished, 5 held by the fraud guard.
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    configure_cli_logging(log_level)
    if ctx.invoked_subcommand not in _REPORTS_PLUGIN_PROBLEMS and not ctx.resilient_parsing:
        _warn_about_broken_plugins()


#: Commands that report broken plugins themselves instead of as warning lines.
_REPORTS_PLUGIN_PROBLEMS = frozenset({"plugins", "config"})


def _warn_about_broken_plugins() -> None:
    """One warning line on stderr per plugin that failed and per name clash (through logging,
    so ``--log-level error`` silences them); the command itself goes on."""
    from otpagent.plugins import build_registry

    build_registry(warn=True)


for _command in (run, send, otp, status, stats, load, cleanup, plugins, config_group, demo, fraud):
    cli.add_command(_command)


def _register_plugin_commands() -> None:
    from otpagent.plugin_loading import add_plugin_commands

    add_plugin_commands(cli)  # a plugin that raises here is reported like one that fails to import


def main() -> None:
    _register_plugin_commands()
    cli(prog_name="otpagent")


if __name__ == "__main__":
    main()
