"""Under ``synchronous: full`` a claim commits without waiting for the disk, and nothing else
does: a claim lost to a power cut is claimed again (as a dead worker's is), while an enqueue,
an outcome or a group holding any durable write keeps its fsync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otpagent.model import Status
from otpagent.protocols import MessageUpdate
from otpagent.storage.sqlite import SqliteStorage
from otpagent.storage.sqlite_writer import _PendingWrite
from otpagent.testing.data import T0, new


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[SqliteStorage, list[str]]]:
    storage = SqliteStorage(tmp_path / "a.db")  # synchronous: full, the default
    statements: list[str] = []
    storage._conn().set_trace_callback(statements.append)  # this thread's connection: every write below
    yield storage, statements
    storage.close()


def _level_of_each_commit(statements: list[str]) -> list[str]:
    """The ``synchronous`` level each ``BEGIN IMMEDIATE`` ran under, in order."""
    level, out = "FULL", []
    for sql in statements:
        if sql.startswith("PRAGMA synchronous="):
            level = sql.split("=", 1)[1]
        elif sql == "BEGIN IMMEDIATE":
            out.append(level)
    return out


def test_a_claim_alone_commits_without_the_fsync_and_the_writes_around_it_keep_theirs(
        traced: tuple[SqliteStorage, list[str]]) -> None:
    storage, statements = traced
    storage.enqueue([new(), new()], T0)
    (first, _second) = storage.claim_due("w1", 4, 30.0, T0)
    storage.update_message(MessageUpdate(message_id=first.id, status=Status.SENT, expected_owner="w1"), T0)
    storage.claim_due("w1", 4, 30.0, T0)  # an empty claim: no write, still not durable
    storage.enqueue([new(), new()], T0)

    assert _level_of_each_commit(statements) == ["FULL", "NORMAL", "FULL", "NORMAL", "FULL"]
    assert storage._conn().execute("PRAGMA synchronous").fetchone()[0] == 2, "back to FULL (2) for what follows"


def test_a_group_holding_any_durable_write_waits_for_the_disk(traced: tuple[SqliteStorage, list[str]]) -> None:
    storage, statements = traced
    claim = _PendingWrite(lambda conn: conn.execute("SELECT 1").fetchone(), durable=False)
    enqueue = _PendingWrite(lambda conn: conn.execute("SELECT 2").fetchone())
    storage._commit_leading([claim])
    storage._commit_leading([claim, enqueue])

    assert _level_of_each_commit(statements) == ["NORMAL", "FULL"]


def test_a_store_configured_normal_never_switches(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db", synchronous="normal")
    try:
        statements: list[str] = []
        storage._conn().set_trace_callback(statements.append)
        storage.enqueue([new(), new()], T0)
        storage.claim_due("w1", 4, 30.0, T0)

        assert not [s for s in statements if s.startswith("PRAGMA synchronous")]
    finally:
        storage.close()
