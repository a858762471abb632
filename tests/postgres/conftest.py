"""Fixtures for the PostgreSQL backend's own tests: a fresh schema per test, dropped after.

Every test here needs the server (127.0.0.1:5432, database ``test``): outside CI it is
skipped when unreachable, in CI (``CI=true``) it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.backends import PG_DSN, drop_schema, in_ci, new_schema_name, postgres_opener, require_postgres

try:
    import otpagent_postgres  # noqa: F401
except ImportError:
    # Outside CI a missing plugin skips this directory; in CI the import errors fail loudly.
    collect_ignore_glob = [] if in_ci() else ["test_*.py"]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    require_postgres()
    schema = new_schema_name()
    yield schema
    drop_schema(schema)


@pytest.fixture
def open_store(pg_schema: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Open PostgresStorage instances on the test's schema (all closed at teardown)."""
    opened: list[Any] = []

    def open_(**settings: Any) -> Any:
        store = postgres_opener(pg_schema, tmp_path, **settings)()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def terminate_backends(schema: str) -> int:
    """``pg_terminate_backend`` every connection a store on ``schema`` holds; returns how many."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"otpagent:{schema}"[:63],),
        ).fetchall()
    return len(rows)


def stored_ids(schema: str) -> list[str]:
    """The id of every message stored in ``schema``, in order, read on a connection of its own."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        return [row[0] for row in conn.execute(f'SELECT id FROM "{schema}".messages ORDER BY id')]
