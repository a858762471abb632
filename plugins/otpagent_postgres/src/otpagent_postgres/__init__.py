"""PostgreSQL storage backend for otpagent (``"storage": {"backend": "postgres", "dsn": ...}``).

``PostgresStorage`` is imported on first use: otpagent loads this package's plugin at every
start-up, and psycopg is a heavy import that a process on SQLite should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent_postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStorage":
        from otpagent_postgres.storage import PostgresStorage

        return PostgresStorage
    raise AttributeError(name)
