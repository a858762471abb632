"""The webhook outbox on PostgreSQL beyond the contract (``otpagent.testing.contract.webhook_outbox``,
run for every backend): out-of-order commits, concurrent pumps while transactions commit,
connection loss and the migration of an existing database (the sink end to end is in
``test_webhook_sink.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from otpagent_postgres.outbox import _ANY_NEW, _PULL, CursorAheadOfDatabase, PostgresWebhookOutbox
from otpagent_postgres.schema import _MIGRATIONS, SCHEMA_VERSION
from tests.conftest import wait_for
from tests.contract.backends import PG_DSN
from tests.postgres.conftest import terminate_backends

pytestmark = pytest.mark.postgres

T0 = 1_800_000_000.0


def connect(schema: str) -> psycopg.Connection[Any]:
    """A raw connection on the test's schema, for transactions the test holds open itself."""
    return psycopg.connect(PG_DSN, options=f"-c search_path={schema}")


def insert_event(conn: psycopg.Connection[Any], event_type: str = "queued", message_id: str = "m") -> int:
    row = conn.execute("INSERT INTO events (message_id, type, at, data) VALUES (%s, %s, %s, NULL) RETURNING id",
                       (message_id, event_type, T0)).fetchone()
    assert row is not None
    return int(row[0])


def settle(schema: str, timeout: float = 10.0) -> None:
    """Wait until every transaction that started before now has ended (the pull horizon passed
    it), so a pull is deterministic even while other sessions write elsewhere in the cluster."""
    with connect(schema) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert row is not None
        conn.commit()
        def passed() -> bool:
            done = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot()) > %s::xid8", (row[0],)).fetchone()
            return bool(done and done[0])

        assert wait_for(passed, timeout=timeout)


def delivered_event_ids(outbox: PostgresWebhookOutbox) -> list[int]:
    return sorted(int(d.webhook_id.removeprefix("evt_")) for d in outbox.list(limit=100_000))


@pytest.fixture
def outbox(open_store: Callable[..., Any]) -> PostgresWebhookOutbox:
    out: PostgresWebhookOutbox = open_store().webhook_outbox()
    out.ensure_endpoint("app", T0)
    return out


# -- ordering ----------------------------------------------------------------------------------
@pytest.mark.parametrize("later_id_starts_first", [False, True])
def test_an_event_committed_after_a_later_id_event_is_still_delivered_once(
        outbox: PostgresWebhookOutbox, pg_schema: str, later_id_starts_first: bool) -> None:
    with connect(pg_schema) as a, connect(pg_schema) as b:
        if later_id_starts_first:
            b.execute("SELECT pg_current_xact_id()")  # B's transaction is older than A's
        early = insert_event(a, message_id="a")  # A takes the lower id and stays open
        late = insert_event(b, message_id="b")
        b.commit()

        pulled = [outbox.pull("app", None, T0)]

        def pulled_b() -> bool:
            pulled.append(outbox.pull("app", None, T0))
            return sum(pulled) > 0

        if later_id_starts_first:  # B is below the horizon once nothing older than it runs
            assert wait_for(pulled_b, timeout=10)
        seen_while_a_open = delivered_event_ids(outbox)
        a.commit()
        settle(pg_schema)
        pulled += [outbox.pull("app", None, T0), outbox.pull("app", None, T0)]

    assert early < late
    assert seen_while_a_open == ([late] if later_id_starts_first else [])
    assert (sum(pulled), pulled[-1]) == (2, 0)
    assert delivered_event_ids(outbox) == [early, late]


def test_a_rolled_back_event_never_blocks_later_ones(outbox: PostgresWebhookOutbox, pg_schema: str) -> None:
    with connect(pg_schema) as a, connect(pg_schema) as b:
        insert_event(a)
        kept = insert_event(b)
        b.commit()
        a.rollback()
        settle(pg_schema)

        outbox.pull("app", None, T0)

    assert delivered_event_ids(outbox) == [kept]


def test_pulls_page_through_a_transaction_bigger_than_a_batch(outbox: PostgresWebhookOutbox,
                                                             pg_schema: str) -> None:
    with connect(pg_schema) as conn:
        ids = [insert_event(conn, "sent" if i % 2 else "queued") for i in range(25)]
    settle(pg_schema)

    pulled = [outbox.pull("app", {"sent"}, T0, limit=5) for _ in range(4)]

    assert pulled == [5, 5, 2, 0]
    assert delivered_event_ids(outbox) == ids[1::2]


def test_two_pumps_pulling_at_once_create_each_delivery_once(open_store: Callable[..., Any],
                                                            pg_schema: str) -> None:
    pumps: list[PostgresWebhookOutbox] = [open_store().webhook_outbox() for _ in range(2)]
    pumps[0].ensure_endpoint("app", T0)
    writing = threading.Event()
    writing.set()
    inserted: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        with connect(pg_schema) as conn:
            for _ in range(150):
                inserted.append(insert_event(conn))
                conn.commit()
        writing.clear()

    def pump(outbox: PostgresWebhookOutbox) -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not outbox.pull("app", None, T0, limit=7) and not writing.is_set():
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=pump, args=(p,)) for p in pumps * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    settle(pg_schema)
    while pumps[0].pull("app", None, T0):
        pass

    assert errors == []
    assert delivered_event_ids(pumps[0]) == sorted(inserted)


def test_the_idle_check_walks_the_index_however_long_the_history(outbox: PostgresWebhookOutbox,
                                                                pg_schema: str) -> None:
    with connect(pg_schema) as conn:
        conn.execute("INSERT INTO events (message_id, type, at) SELECT 'm', 'queued', %s "
                     "FROM generate_series(1, 50000)", (T0,))
        conn.execute("ANALYZE events")
        plans = ["\n".join(r[0] for r in conn.execute(b"EXPLAIN " + query, params).fetchall())
                 for query, params in ((_ANY_NEW, ("app",)),
                                       (_PULL, {"xid": "3", "id": 0, "types": None, "limit": 500}))]

    assert all("events_xid" in plan and "Seq Scan on events" not in plan for plan in plans), plans


def test_a_cursor_ahead_of_the_cluster_stops_the_pump_loudly(outbox: PostgresWebhookOutbox,
                                                             pg_schema: str) -> None:
    with connect(pg_schema) as conn:  # as after restoring a dump into a younger cluster
        conn.execute("UPDATE webhook_cursors SET xid = '9000000000000'")

    with pytest.raises(CursorAheadOfDatabase, match="replay"):
        outbox.pull("app", None, T0)


# -- connection loss and migration ------------------------------------------------------------
def test_the_outbox_carries_on_after_every_connection_is_terminated(outbox: PostgresWebhookOutbox,
                                                                    pg_schema: str) -> None:
    with connect(pg_schema) as conn:
        event_id = insert_event(conn)
    settle(pg_schema)

    assert terminate_backends(pg_schema) >= 1
    pulled = outbox.pull("app", None, T0)
    (claimed,) = outbox.claim("app", "w", 60.0, T0)

    assert (pulled, claimed.webhook_id) == (1, f"evt_{event_id}")
    assert outbox.mark_delivered(claimed.id, "w", T0)


def test_an_existing_database_is_migrated_and_its_old_events_are_history(open_store: Callable[..., Any],
                                                                        pg_schema: str) -> None:
    with connect(pg_schema) as conn:  # a schema written by the previous release
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ "
                     "NOT NULL DEFAULT now())")
        conn.execute(_MIGRATIONS[0].encode())
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        old = insert_event(conn)

    store = open_store()
    settle(pg_schema)
    outbox = store.webhook_outbox()
    outbox.ensure_endpoint("app", T0)
    with connect(pg_schema) as conn:
        new = insert_event(conn)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    settle(pg_schema)
    outbox.pull("app", None, T0)

    assert store.schema_version == SCHEMA_VERSION == versions[-1]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert delivered_event_ids(outbox) == [new]
    assert outbox.replay("app", None, T0 - 1, T0) == 2 and old < new
