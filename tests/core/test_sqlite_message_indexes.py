"""SQLite's messages indexes: every write touches as few as it can (each index page a write
touches is a WAL frame its commit writes and syncs), and the reads they serve still walk an
index, never the table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from otpagent.model import Status
from otpagent.protocols import MessageUpdate
from otpagent.storage import sqlreads, sqlrules
from otpagent.storage.sqlite import RECENT, SqliteStorage
from otpagent.storage.sqlite_schema import migrate
from otpagent.storage.sqlite_writer import SqliteTx
from otpagent.testing.data import T0, new


def _plan(storage: SqliteStorage, query: str, params: list[object]) -> str:
    return "\n".join(str(row[3]) for row in storage.connection().execute(f"EXPLAIN QUERY PLAN {query}", params))


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL")}


def test_the_reads_of_status_and_time_walk_one_index(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    try:
        assert _indexes(storage.connection()) == {"messages_idempotency", "messages_ready", "messages_leased",
                                                  "messages_secrets", "messages_status_updated"}
        recent = _plan(storage, RECENT, [10] * (len(Status) + 1))
        by_status = _plan(storage, "SELECT status, COUNT(*) AS n FROM messages GROUP BY status", [])
        finished = _plan(storage, f"SELECT id FROM messages WHERE status IN ({sqlrules.FINISHED_SQL}) "
                                  "AND updated_at < ?", [T0])

        assert "SCAN messages" not in recent
        assert recent.count("USING INDEX messages_status_updated") == len(Status)
        assert "COVERING INDEX messages_status_updated" in by_status
        assert "INDEX messages_status_updated (status=? AND updated_at<?)" in finished
    finally:
        storage.close()


def test_recent_messages_are_the_most_recently_updated_of_every_status(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    try:
        items = [new() for _ in range(6)]
        for i, item in enumerate(items):
            storage.enqueue([item], T0 + i)
        storage.claim_due("w1", 2, 30.0, T0 + 10)  # the two oldest, now sending at T0 + 10
        first, second = items[0].message.id, items[1].message.id
        storage.update_message(MessageUpdate(message_id=first, status=Status.SENT, expected_owner="w1"), T0 + 11)

        recent = [m.id for m in storage.recent_messages(4)]

        assert recent == [first, second, items[5].message.id, items[4].message.id]
        assert [m.id for m in storage.recent_messages(100)] == [m.id for m in sqlreads.recent_messages(
            SqliteTx(storage.connection()), 100)]
    finally:
        storage.close()


def test_a_database_made_before_the_merge_gets_the_one_index_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, up_to=6)
    assert {"messages_status", "messages_updated"} <= _indexes(conn)
    conn.close()
    storage = SqliteStorage(path)
    try:
        item = new()
        storage.enqueue([item], T0)

        assert "messages_status_updated" in _indexes(storage.connection())
        assert not {"messages_status", "messages_updated"} & _indexes(storage.connection())
        assert [m.id for m in storage.recent_messages(5)] == [item.message.id]
    finally:
        storage.close()

