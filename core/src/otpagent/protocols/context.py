"""What every plugin factory is handed besides its own config section."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from otpagent.protocols.storage import StorageBackend
from otpagent.redact import redacted_repr

__all__ = ["ChannelSpec", "PluginContext"]


@attrs.frozen(kw_only=True)
class PluginContext:
    """What every factory may need besides its own config section.

    ``storage`` is None only for storage factories (the store is being built). A factory that
    needs a storage capability asks for it with :func:`otpagent.storage.capabilities.require`,
    which names the capability and the config key in the error when the backend lacks it.
    """

    config_dir: Any  # pathlib.Path: where relative paths in config resolve
    storage: StorageBackend | None = None
    public_url: str | None = None
    clock: Callable[[], float] = time.time


@attrs.frozen(kw_only=True)
class ChannelSpec:
    """A channel's validated config section, handed to its factory.

    ``settings`` is the whole section as written (after ``${ENV}`` interpolation), so a plugin
    can read keys of its own; the common keys are parsed into the other fields.
    """

    name: str
    plugin: str
    kind: str | None
    settings: Mapping[str, Any] = attrs.field(repr=redacted_repr)  # credentials stay out of reprs
    api_config: Mapping[str, Any] = attrs.field(repr=redacted_repr)
    cost: float | None
    context: PluginContext
