"""The batch insert reads each row's values by position and casts them to the column types it
names: those must be the table's own, or a value would be converted twice (or not at all)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from otpagent.storage.rows import MESSAGE_COLUMNS
from otpagent_postgres.insert import MESSAGE_TYPES
from tests.contract.backends import PG_DSN


def test_the_batch_insert_casts_every_column_to_its_type_in_the_table(open_store: Callable[..., Any],
                                                                    pg_schema: str) -> None:
    open_store()  # migrates the schema
    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (f'"{pg_schema}".messages',)).fetchall()
    table = dict(rows)

    assert {c: MESSAGE_TYPES[c] for c in MESSAGE_COLUMNS} == {c: table[c] for c in MESSAGE_COLUMNS}
