"""PostgreSQL storage backend for otpagent (``"storage": {"backend": "postgres", "dsn": ...}``)."""

from otpagent_postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]
