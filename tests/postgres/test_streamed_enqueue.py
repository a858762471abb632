"""A bulk send on PostgreSQL: each chunk's insert is on the server before the next chunk is
validated, a lost connection replays what was taken, and a bad request anywhere writes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from otpagent.errors import InvalidRequest
from otpagent.protocols import NewMessage
from otpagent.testing import T0, new
from tests.conftest import wait_for
from tests.contract.backends import PG_DSN
from tests.postgres.conftest import stored_ids, terminate_backends

pytestmark = pytest.mark.postgres


def _store_statements(schema: str) -> list[str]:
    """The latest statement of each server connection the store on ``schema`` holds."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute("SELECT query FROM pg_stat_activity WHERE application_name = %s",
                            (f"otpagent:{schema}"[:63],)).fetchall()
    return [r[0] for r in rows]


def _seen_by_server(schema: str, needle: str) -> bool:
    """Whether a connection of the store shows ``needle`` in its statement within 10 s."""
    return wait_for(lambda: any(needle in q for q in _store_statements(schema)), 10.0, 0.02)


def _gone(schema: str) -> bool:
    """Whether the store's server connections are all gone within 10 s (and then the client's
    socket has had a moment to get the news)."""
    gone = wait_for(lambda: not _store_statements(schema), 10.0, 0.02)
    time.sleep(0.1)
    return gone


def test_a_chunk_reaches_the_server_before_the_next_one_is_produced(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    first, second = [new(), new()], [new()]
    seen: list[bool] = []

    def chunks() -> Iterator[Sequence[NewMessage]]:
        yield first
        # The store has not asked for the next chunk yet; its insert of the first must already
        # be on the server (in the transaction it has not committed).
        seen.append(_seen_by_server(pg_schema, "INSERT INTO messages"))
        seen.append(len(stored_ids(pg_schema)) == 0)
        yield second

    results = store.enqueue_stream(chunks(), T0)

    assert seen == [True, True]
    assert [r.message_id for r in results] == [i.message.id for i in (*first, *second)]
    assert len(stored_ids(pg_schema)) == 3


@pytest.mark.parametrize("settled", [False, True], ids=["next-chunk-right-after-the-kill", "once-the-client-knows"])
def test_a_connection_lost_between_chunks_replays_what_was_taken(open_store: Any, pg_schema: str,
                                                                 settled: bool) -> None:
    # Right after the kill the loss tends to surface at the COMMIT (outcome unknown: checked
    # one message at a time); once the client's socket has the news, at the next chunk's insert
    # (replayed from the first chunk). Either way every message is stored once.
    store = open_store()
    first, second = [new() for _ in range(40)], [new() for _ in range(40)]
    produced: list[int] = []

    def chunks() -> Iterator[Sequence[NewMessage]]:
        produced.append(1)
        yield first
        assert terminate_backends(pg_schema) >= 1  # the transaction holding the first chunk dies
        assert not settled or _gone(pg_schema)
        produced.append(2)
        yield second

    results = store.enqueue_stream(chunks(), T0)

    assert produced == [1, 2]  # the stream was taken once
    assert [r.message_id for r in results] == [i.message.id for i in (*first, *second)]
    assert all(r.created for r in results)
    assert len(stored_ids(pg_schema)) == 80  # every message once
    assert [e.type for e in store.get_events(first[0].message.id)] == ["queued"]


def test_a_bad_request_late_in_a_bulk_send_writes_nothing_and_names_its_index(pg_schema: str,
                                                                               tmp_path: Path) -> None:
    from otpagent import IntelligentOTPAgent
    from tests.conftest import agent_config

    config = agent_config(tmp_path, storage={"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema})
    requests: list[dict[str, Any]] = [{"phone_number": f"+4477009{i:05d}", "content": "hello"} for i in range(150)]
    requests[140] = {"phone_number": "not a number", "content": "hello"}
    with IntelligentOTPAgent(config) as agent:
        assert agent.capabilities.streamed_enqueue is not None

        with pytest.raises(InvalidRequest) as caught:
            agent.send_bulk_messages(requests)
        written_after_refusal = len(stored_ids(pg_schema))
        requests[140] = {"phone_number": "+447700900999", "content": "hello"}
        ids = agent.send_bulk_messages(requests)

    assert [(e.index, e.field) for e in caught.value.errors] == [(140, "phone_number")]
    assert written_after_refusal == 0
    assert len(set(ids)) == 150 and len(stored_ids(pg_schema)) == 150
