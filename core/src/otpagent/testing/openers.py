"""Store openers: how the contract suite opens (another handle on) the store under test.

The multi-process tests hand the opener to spawned children, which open their own connection to
the very same store: an opener for a shared backend must be picklable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from otpagent.protocols import PluginContext, StorageBackend

__all__ = ["FactoryOpener", "StoreOpener"]


class StoreOpener(Protocol):
    """Opens a new handle (connection) on one and the same store, each time it is called."""

    def __call__(self) -> StorageBackend: ...


@attrs.frozen
class FactoryOpener:
    """Opens the store by calling a backend factory with ``settings``, as the agent would.

    Picklable when ``factory`` is a module-level function and ``settings`` plain data, e.g.
    ``FactoryOpener(create_acme_storage, {"backend": "acme", "dsn": dsn, "schema": schema})``.
    """

    factory: Callable[[Mapping[str, Any], PluginContext], StorageBackend]
    settings: Mapping[str, Any]
    config_dir: str = "."

    def __call__(self) -> StorageBackend:
        return self.factory(self.settings, PluginContext(config_dir=Path(self.config_dir)))
