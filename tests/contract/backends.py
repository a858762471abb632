"""How the contract suite opens each storage backend, in this process or in a child process.

A :class:`StoreSpec` is a picklable recipe (backend name + settings), so the multi-process tests
can hand it to a spawned child that opens its own connection to the very same store.
PostgreSQL tests each get their own schema, created on open and dropped at teardown.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from otpagent.protocols import PluginContext, StorageBackend

PG_DSN = os.environ.get("OTPAGENT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    """CI must prove the PostgreSQL backend, so an unreachable server fails there."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def postgres_unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def require_postgres() -> None:
    """Make sure the plugin is installed and the server answers (else fail in CI / skip)."""
    try:
        import psycopg

        import otpagent_postgres  # noqa: F401
    except ImportError as exc:
        postgres_unavailable(f"otpagent-postgres is not installed ({exc})")
        return
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        postgres_unavailable(f"cannot connect to {PG_DSN}: {str(exc).strip()}")


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it (best effort: the test already has its result)."""
    import psycopg
    from psycopg import sql

    assert re.fullmatch(r"t_[0-9a-f]+", schema)
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@attrs.frozen
class StoreSpec:
    """Everything needed to open one store again, from any process."""

    backend: str
    settings: Mapping[str, Any]
    config_dir: str

    def open(self) -> StorageBackend:
        context = PluginContext(config_dir=Path(self.config_dir))
        if self.backend == "sqlite":
            from otpagent.storage.sqlite import create_sqlite_storage

            return create_sqlite_storage(self.settings, context)
        if self.backend == "postgres":
            from otpagent_postgres.plugin import create_postgres_storage

            return create_postgres_storage(self.settings, context)
        raise ValueError(f"unknown backend {self.backend!r}")


def make_spec(backend: str, tmp_path: Path) -> StoreSpec:
    if backend == "sqlite":
        return StoreSpec("sqlite", {"backend": "sqlite", "path": str(tmp_path / "contract.db")}, str(tmp_path))
    settings = {"backend": "postgres", "dsn": PG_DSN, "schema": new_schema_name(), "pool_min_size": 1,
                "pool_max_size": 20}
    return StoreSpec("postgres", settings, str(tmp_path))
