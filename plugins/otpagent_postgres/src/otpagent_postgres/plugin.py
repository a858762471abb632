"""Registers the ``postgres`` storage backend with otpagent (entry point ``otpagent.postgres``).

``"storage": {"backend": "postgres", "dsn": "${OTPAGENT_DATABASE_URL}", "schema": "public",
"pool_min_size": 1, "pool_max_size": 10, "retry_seconds": 60, "connect_timeout_seconds": 5}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otpagent.errors import ConfigError
from otpagent.hookspecs import hookimpl
from otpagent.protocols import PluginContext
from otpagent.registration import RegisterStorageBackend

if TYPE_CHECKING:
    import click

    from otpagent_postgres.storage import PostgresStorage

__all__ = ["create_postgres_storage", "otpagent_register_storage_backends"]

_KEYS = ("backend", "dsn", "schema", "pool_min_size", "pool_max_size", "retry_seconds", "connect_timeout_seconds",
         "cleanup_batch_size")
#: core's config loader merges the SQLite default ``path`` into every storage section.
_CORE_DEFAULT_PATH = "otpagent.db"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@hookimpl
def otpagent_register_storage_backends(register: RegisterStorageBackend) -> None:
    register("postgres", create_postgres_storage)


def create_postgres_storage(settings: Mapping[str, Any], context: PluginContext) -> PostgresStorage:
    """Factory for ``"storage": {"backend": "postgres", ...}``: validates, connects, migrates."""
    for key in settings:
        if key == "path" and settings[key] == _CORE_DEFAULT_PATH:
            continue  # filled in by core's config defaults, not written by the user
        if key not in _KEYS:
            raise ConfigError(f"storage.{key}", f"unknown key for the postgres backend (expected one of "
                                                f"{', '.join(_KEYS[1:])})")
    dsn = settings.get("dsn")
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigError("storage.dsn", "required: a PostgreSQL connection string such as "
                                         "postgresql://user@host:5432/dbname (e.g. \"${OTPAGENT_DATABASE_URL}\")")
    schema = settings.get("schema", "public")
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError("storage.schema", "must be a plain identifier (letters, digits, underscore)")
    min_size = _positive_int(settings, "pool_min_size", 1)
    max_size = _positive_int(settings, "pool_max_size", max(10, min_size))
    if max_size < min_size:
        raise ConfigError("storage.pool_max_size", "must be at least pool_min_size")
    import psycopg  # here, not at start-up: psycopg is heavy and this plugin loads everywhere
    import psycopg_pool

    from otpagent_postgres.schema import SchemaTooNew
    from otpagent_postgres.storage import PostgresStorage

    try:
        return PostgresStorage(
            dsn, schema=schema, pool_min_size=min_size, pool_max_size=max_size,
            retry_seconds=_positive_number(settings, "retry_seconds", 60.0),
            connect_timeout=_positive_number(settings, "connect_timeout_seconds", 5.0),
            cleanup_batch_size=_positive_int(settings, "cleanup_batch_size", 1000),
        )
    except SchemaTooNew as exc:
        raise ConfigError("storage.schema", str(exc)) from None
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        # psycopg's messages name host and port, never the password. Chained, so a caller can tell
        # a server that is down (the CLI's "unavailable") from a key that is wrong.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("storage.dsn", f"cannot connect to PostgreSQL: {reason}") from exc


def _positive_int(settings: Mapping[str, Any], key: str, default: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"storage.{key}", f"must be a positive integer, got {value!r}")
    return value


def _positive_number(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"storage.{key}", f"must be a positive number, got {value!r}")
    return float(value)


@hookimpl
def otpagent_register_commands(cli: click.Group) -> None:
    from otpagent_postgres.commands import add_commands

    add_commands(cli)
