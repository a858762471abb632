"""The storage contract suite, through its public route (``otpagent.testing``), on every backend
this repository ships: SQLite, PostgreSQL and the in-memory reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otpagent.storage.sqlite import create_sqlite_storage
from otpagent.testing import FactoryOpener, InMemoryStorage, InProcessStorageContract, MemoryOpener, StorageContract
from tests.contract.backends import drop_schema, new_schema_name, postgres_opener, require_postgres


class TestSqliteStorage(StorageContract):
    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> FactoryOpener:
        return FactoryOpener(create_sqlite_storage, {"backend": "sqlite", "path": str(tmp_path / "contract.db")},
                             str(tmp_path))


@pytest.mark.postgres
class TestPostgresStorage(StorageContract):
    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Iterator[FactoryOpener]:
        require_postgres()
        schema = new_schema_name()
        yield postgres_opener(schema, tmp_path, pool_min_size=1, pool_max_size=20)
        drop_schema(schema)


class TestMemoryStorage(InProcessStorageContract):

    @pytest.fixture
    def store_opener(self) -> MemoryOpener:
        return InMemoryStorage().opener()
