"""``otpagent db migrate`` and ``otpagent db version``: schema management from the command line.

Workers migrate on start anyway; running ``db migrate`` once from a deploy step keeps the DDL
out of the workers' start-up and lets a rollout fail early on a bad DSN.
"""

from __future__ import annotations

import sys
from typing import Any

import click

__all__ = ["add_commands"]


def _storage_settings(ctx: click.Context) -> dict[str, Any]:
    from otpagent.config import load_config
    from otpagent.errors import ConfigError

    root = ctx.find_root()
    config = load_config((root.obj or {}).get("config"))
    if config.storage_backend != "postgres":
        raise ConfigError("storage.backend", f"is {config.storage_backend!r}; `otpagent db` manages postgres only")
    return dict(config.storage)


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def add_commands(cli: click.Group) -> None:
    """Attach the ``db`` group to the root command line."""

    @cli.group()
    def db() -> None:
        """Manage the PostgreSQL schema (otpagent-postgres)."""

    @db.command()
    @click.pass_context
    def migrate(ctx: click.Context) -> None:
        """Apply pending schema migrations (safe while workers run)."""
        from otpagent.errors import OtpagentError
        from otpagent.protocols import PluginContext
        from otpagent_postgres.plugin import create_postgres_storage

        try:
            store = create_postgres_storage(_storage_settings(ctx), PluginContext(config_dir="."))
        except OtpagentError as exc:
            _fail(exc)
            return
        click.echo(f"schema {store.schema!r} at version {store.schema_version}")
        store.close()
