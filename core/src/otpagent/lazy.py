"""Factories imported when first called.

The built-in plugin registers every storage backend, routing strategy and sink the core ships,
but an agent uses one of each: registering them by name keeps ``import otpagent`` from importing
the in-memory backend, adaptive routing's learning and the rest until a config asks for them.
Third-party plugins can use it the same way (``lazy("acme.channel:create_channel")``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LazyFactory", "lazy"]


class LazyFactory:
    """Calls ``module:function`` (imported on the first call); carries the function's
    ``otpagent_settings`` (see :func:`otpagent.settings.describes`) for the config schema."""

    def __init__(self, target: str) -> None:
        module, sep, name = target.partition(":")
        if not (module and sep and name):
            raise ValueError(f"a lazy factory is named 'package.module:function', got {target!r}")
        self.target = target
        self._module = module
        self._name = name
        self._function: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> Callable[..., Any]:
        """The factory itself, imported now if it was not yet."""
        if self._function is None:
            with self._lock:
                if self._function is None:
                    function = getattr(importlib.import_module(self._module), self._name)
                    if not callable(function):
                        raise TypeError(f"{self.target} is not callable")
                    self._function = function
        return self._function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    @property
    def otpagent_settings(self) -> Any:
        return getattr(self.load(), "otpagent_settings", None)

    def __repr__(self) -> str:
        return f"<lazy factory {self.target}>"


def lazy(target: str) -> LazyFactory:
    """A factory for ``"package.module:function"``, imported on its first call."""
    return LazyFactory(target)
