"""SQLite's page size: a new database takes ``storage.page_size`` (2048 unless set), a database
that already exists keeps its own and works as before, and a size SQLite cannot use is refused
naming the key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from otpagent.errors import ConfigError
from otpagent.model import Status
from otpagent.protocols import PluginContext
from otpagent.storage.sqlite import SqliteStorage, create_sqlite_storage
from otpagent.testing.data import T0, new


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def _open(tmp_path: Path, **settings: object) -> SqliteStorage:
    return create_sqlite_storage({"backend": "sqlite", "path": "a.db", **settings}, PluginContext(config_dir=tmp_path))


def test_a_new_database_takes_the_configured_page_size(tmp_path: Path) -> None:
    _open(tmp_path).close()
    (tmp_path / "b").mkdir()
    _open(tmp_path / "b", page_size=8192).close()

    assert _page_size(tmp_path / "a.db") == 2048
    assert _page_size(tmp_path / "b" / "a.db") == 8192


def test_an_existing_database_keeps_its_page_size_and_its_messages(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "a.db") as conn:  # as SQLite's default made it before
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    old = _open(tmp_path)
    old.enqueue([new(id="m1")], T0)
    old.close()

    storage = _open(tmp_path, page_size=1024)
    try:
        storage.enqueue([new(id="m2")], T0)
        claimed = storage.claim_due("w", 10, 30.0, T0 + 1)
    finally:
        storage.close()

    assert _page_size(tmp_path / "a.db") == 4096
    assert sorted(m.id for m in claimed) == ["m1", "m2"]
    assert {m.status for m in claimed} == {Status.SENDING}


@pytest.mark.parametrize("bad", [1000, 128, 131072, "2048"])
def test_a_page_size_sqlite_cannot_use_is_refused_naming_the_key(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match=r"storage\.page_size"):
        _open(tmp_path, page_size=bad)
    assert not (tmp_path / "a.db").exists()
