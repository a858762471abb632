"""Registers the ``postgres`` storage backend with otpagent (entry point ``otpagent.postgres``).

``"storage": {"backend": "postgres", "dsn": "${OTPAGENT_DATABASE_URL}", "schema": "public",
"pool_min_size": 1, "pool_max_size": 10, "retry_seconds": 60, "connect_timeout_seconds": 5}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from otpagent.errors import ConfigError
from otpagent.hookspecs import hookimpl
from otpagent.protocols import PluginContext
from otpagent.registration import RegisterStorageBackend
from otpagent.settings import describes, setting, structure

if TYPE_CHECKING:
    import click

    from otpagent_postgres.storage import PostgresStorage

__all__ = ["PostgresSettings", "create_postgres_storage", "otpagent_register_storage_backends"]

#: core's config loader merges the SQLite default ``path`` into every storage section.
_CORE_DEFAULT_PATH = "otpagent.db"


@attrs.frozen
class PostgresSettings:
    """``storage`` for the ``postgres`` backend."""

    dsn: str = setting(min_length=1, secret=True,
                       doc="A PostgreSQL connection string such as postgresql://user@host:5432/dbname "
                           "(e.g. \"${OTPAGENT_DATABASE_URL}\")")
    backend: str = setting("postgres", choices=("postgres",))
    schema: str = setting("public", pattern=r"[A-Za-z_][A-Za-z0-9_]{0,62}",
                          pattern_reason="must be a plain identifier (letters, digits, underscore)")
    pool_min_size: int = setting(1, ge=1)
    pool_max_size: int | None = setting(None, ge=1, doc="Connections at most (default: 10, or pool_min_size)")
    retry_seconds: float = setting(60.0, gt=0)
    connect_timeout_seconds: float = setting(5.0, gt=0)
    cleanup_batch_size: int = setting(1000, ge=1)

    @property
    def max_size(self) -> int:
        return self.pool_max_size if self.pool_max_size is not None else max(10, self.pool_min_size)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.max_size < self.pool_min_size:
            yield "pool_max_size", "must be at least pool_min_size"


@hookimpl
def otpagent_register_storage_backends(register: RegisterStorageBackend) -> None:
    register("postgres", create_postgres_storage)


@describes(PostgresSettings)
def create_postgres_storage(settings: Mapping[str, Any], context: PluginContext) -> PostgresStorage:
    """Factory for ``"storage": {"backend": "postgres", ...}``: validates, connects, migrates."""
    if settings.get("path") == _CORE_DEFAULT_PATH:  # filled in by core's config defaults, not by the user
        settings = {k: v for k, v in settings.items() if k != "path"}
    s = structure(PostgresSettings, settings, path="storage")
    import psycopg  # here, not at start-up: psycopg is heavy and this plugin loads everywhere
    import psycopg_pool

    from otpagent_postgres.schema import SchemaTooNew
    from otpagent_postgres.storage import PostgresStorage

    try:
        return PostgresStorage(
            s.dsn, schema=s.schema, pool_min_size=s.pool_min_size, pool_max_size=s.max_size,
            retry_seconds=s.retry_seconds, connect_timeout=s.connect_timeout_seconds,
            cleanup_batch_size=s.cleanup_batch_size,
        )
    except SchemaTooNew as exc:
        raise ConfigError("storage.schema", str(exc)) from None
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        # psycopg's messages name host and port, never the password. Chained, so a caller can tell
        # a server that is down (the CLI's "unavailable") from a key that is wrong.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("storage.dsn", f"cannot connect to PostgreSQL: {reason}") from exc


@hookimpl
def otpagent_register_commands(cli: click.Group) -> None:
    from otpagent_postgres.commands import add_commands

    add_commands(cli)
