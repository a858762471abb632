"""otpagent's own log lines: structlog key-value events, emitted through stdlib ``logging``.

A library must not print: routing through ``logging.getLogger("otpagent...")`` leaves the
embedding application in charge of levels and handlers (the CLI sets them from --log-level).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]

_PROCESSORS: list[Any] = [
    structlog.processors.format_exc_info,
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
]


def get_logger(name: str) -> Any:
    """A structlog logger bound to the stdlib logger ``name``."""
    return structlog.wrap_logger(logging.getLogger(name), processors=_PROCESSORS,
                                 wrapper_class=structlog.stdlib.BoundLogger)
