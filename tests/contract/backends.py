"""The PostgreSQL test server: how tests reach it, and what happens when it is not there.

Each PostgreSQL test gets its own schema, created on open and dropped at teardown. In CI
(``CI=true``) an unreachable server FAILS the PostgreSQL tests; elsewhere it skips them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from otpagent.testing import FactoryOpener

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


def postgres_opener(schema: str, tmp_path: Path, **settings: Any) -> FactoryOpener:
    """Opens PostgresStorage on ``schema`` of the test server (picklable for child processes)."""
    from otpagent_postgres.plugin import create_postgres_storage

    section: Mapping[str, Any] = {"backend": "postgres", "dsn": PG_DSN, "schema": schema, **settings}
    return FactoryOpener(create_postgres_storage, section, str(tmp_path))
