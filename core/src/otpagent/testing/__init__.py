"""Testing support, installed with the core: an in-memory backend and the storage contract suite.

- :class:`InMemoryStorage` is a complete storage backend in pure Python (every capability), also
  the built-in backend ``memory``: ``{"storage": {"backend": "memory"}}`` tests an application
  without a database.
- :class:`StorageContract` (imported on first use: it needs pytest) is the contract suite a
  storage backend must pass; see :mod:`otpagent.testing.contract` and docs/storage.md.
- :mod:`otpagent.testing.data` builds messages, attempts and OTPs at a fixed time :data:`T0`.
"""

from __future__ import annotations

from typing import Any

from otpagent.testing.data import T0, code_hash, issue, make_attempt, make_message, new, verify
from otpagent.testing.memory import InMemoryStorage, MemoryOpener, create_memory_storage
from otpagent.testing.openers import FactoryOpener, StoreOpener

__all__ = [
    "T0",
    "FactoryOpener",
    "InMemoryStorage",
    "InProcessStorageContract",
    "MemoryOpener",
    "StorageContract",
    "StoreOpener",
    "code_hash",
    "create_memory_storage",
    "issue",
    "make_attempt",
    "make_message",
    "new",
    "verify",
]


def __getattr__(name: str) -> Any:
    """``StorageContract`` imports pytest, so it is loaded only when asked for."""
    if name in ("StorageContract", "InProcessStorageContract"):
        from otpagent.testing import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
