"""The PostgreSQL side every PostgreSQL peer shares: the server, one private schema per
measurement, and small queries the bench asks of it (never anything outside that schema)."""

from __future__ import annotations

from typing import Any

from bench.parts.postgres import DSN
from bench.peers.base import PeerDriver, Place

__all__ = ["DSN", "PostgresPeer", "create_schema", "drop_schema", "peer_dsn", "postgres_unavailable", "scalar"]


class PostgresPeer(PeerDriver):
    """A peer whose queue lives in the place's own schema on the bench's server."""

    backend = "PostgreSQL"

    def unavailable(self) -> str | None:
        return super().unavailable() or postgres_unavailable()

    def count(self, place: Place, query: str) -> int:
        """``query`` with ``{}`` standing for the place's schema; its single number."""
        from psycopg import sql

        return int(scalar(sql.SQL(query).format(sql.Identifier(place.tag))) or 0)

    def cleanup(self, place: Place) -> None:
        drop_schema(place.tag)


def peer_dsn(application_name: str) -> str:
    """The bench server's DSN with an ``application_name``, so the peer's backends can be found."""
    separator = "&" if "?" in DSN else "?"
    return f"{DSN}{separator}application_name={application_name}"


def postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to PostgreSQL at {DSN.split('@')[-1]}: {type(exc).__name__}"
    return None


def scalar(query: Any, *params: Any) -> Any:
    """The first column of the first row of ``query`` (a ``psycopg.sql`` object or text)."""
    import psycopg

    with psycopg.connect(DSN, autocommit=True, application_name="otpagent-bench") as conn:
        row = conn.execute(query, params or None).fetchone()
    return row[0] if row else None


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DSN, autocommit=True, application_name="otpagent-bench") as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def create_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DSN, autocommit=True, application_name="otpagent-bench") as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
