"""Fixtures shared by the routing tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otpagent.storage.sqlite import SqliteStorage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    """A fresh SQLite store: what adaptive routing shares its evidence through."""
    s = SqliteStorage(tmp_path / "routing.db")
    yield s
    s.close()
