"""The direct connection: work of one statement runs on a connection kept in autocommit outside
the pool, and every way that connection can fail hands the work to the pool's path with the
right ``uncertain`` (see ``otpagent_postgres.connection``)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from otpagent.testing import T0, new
from tests.postgres.conftest import stored_ids, terminate_backends

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def pool_requests(store: Any) -> int:
    """How many times the store's pool was asked for a connection so far."""
    return int(store._db.pool.get_stats().get("requests_num", 0))


def test_one_message_at_a_time_is_enqueued_without_the_pool(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    store.enqueue([new()], T0)  # the direct connection is made on first use
    before = pool_requests(store)
    items = [new() for _ in range(5)]
    for item in items:
        store.enqueue([item], T0)
    assert pool_requests(store) == before
    assert set(stored_ids(pg_schema)) >= {i.message.id for i in items}


def test_work_finding_the_direct_connection_busy_goes_through_the_pool(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    store.enqueue([new()], T0)
    before = pool_requests(store)
    item = new()
    with store._db._direct_lock:  # another thread's statement holds it
        store.enqueue([item], T0)
    assert pool_requests(store) == before + 1
    assert item.message.id in stored_ids(pg_schema)


def test_a_killed_direct_connection_is_replaced_and_nothing_is_stored_twice(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    items = [new() for _ in range(3)]
    store.enqueue([items[0]], T0)
    killed = store._db._direct
    assert terminate_backends(pg_schema) >= 1
    store.enqueue([items[1]], T0)  # the direct try fails; the pool's path checks, then inserts
    assert killed.closed
    before = pool_requests(store)
    store.enqueue([items[2]], T0)  # on a new direct connection
    assert pool_requests(store) == before
    assert store._db._direct is not killed
    assert stored_ids(pg_schema) == sorted(i.message.id for i in items)


def test_a_statement_whose_answer_was_lost_is_retried_as_uncertain(open_store: Any) -> None:
    db = open_store()._db
    db.run(lambda conn, _u: conn.execute("CREATE TABLE probe (k integer PRIMARY KEY)"), one_statement=True)
    tries: list[bool] = []

    def work(conn: Any, uncertain: bool) -> int:
        tries.append(uncertain)
        if not uncertain:  # applied in autocommit, then the connection went before the answer
            conn.execute("INSERT INTO probe VALUES (1)")
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return int(conn.execute("SELECT count(*) AS n FROM probe").fetchone()["n"])

    assert db.run(work, one_statement=True) == 1  # checked, not inserted again
    assert tries == [False, True]
    assert db._direct is None  # a connection that failed mid-statement is not used again


def test_a_statement_error_leaves_the_direct_connection_and_its_cursor_in_use(open_store: Any) -> None:
    db = open_store()._db
    db.run(lambda conn, _u: db.tuple_cursor(conn).execute("SELECT 1"), one_statement=True)
    direct, cursor = db._direct, db._direct_cursor
    with pytest.raises(psycopg.errors.DivisionByZero):
        db.run(lambda conn, _u: db.tuple_cursor(conn).execute("SELECT 1 / 0"), one_statement=True)
    assert db.run(lambda conn, _u: db.tuple_cursor(conn).execute("SELECT 2").fetchone(), one_statement=True) == (2,)
    assert db._direct is direct and db._direct_cursor is cursor and not direct.closed


def test_closing_the_store_closes_the_direct_connection(open_store: Any) -> None:
    store = open_store()
    store.enqueue([new()], T0)
    direct = store._db._direct
    store.close()
    assert direct.closed


def test_the_direct_connection_is_renewed_after_the_pools_max_lifetime(open_store: Any) -> None:
    db = open_store()._db
    db.run(lambda conn, _u: conn.execute("SELECT 1"), one_statement=True)
    old = db._direct
    assert db._direct_until > 0
    db._direct_until = 0.0  # its lifetime is over (as the pool's own connections' would be)
    db.run(lambda conn, _u: conn.execute("SELECT 1"), one_statement=True)
    assert old.closed and db._direct is not old and not db._direct.closed
