"""otpagent's own log lines: structlog key-value events, emitted through stdlib ``logging``.

A library must not print: routing through ``logging.getLogger("otpagent...")`` leaves the
embedding application in charge of levels and handlers. The command line (and ``serve``) call
:func:`configure_cli_logging`, which renders to stderr: otpagent's own lines at ``--log-level``,
event lines (logger ``otpagent.events``) at whatever level each ``log`` sink asks for.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["configure_cli_logging", "get_logger"]


class _Logger:
    """A structlog logger over the stdlib logger ``name``, built on first use: structlog is
    among the dearest imports, and importing otpagent should not pay for it up front."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            processors: list[Any] = [structlog.processors.format_exc_info,
                                     structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)]
            self._logger = structlog.wrap_logger(logging.getLogger(self._name), processors=processors,
                                                 wrapper_class=structlog.stdlib.BoundLogger)
        return getattr(self._logger, attr)


def get_logger(name: str) -> Any:
    """A structlog logger bound to the stdlib logger ``name`` (``log.info("event", key=value)``)."""
    return _Logger(name)


def configure_cli_logging(level: str) -> None:
    """Log to stderr for a command-line process: ``level`` (any case) for otpagent's own lines;
    the ``log`` sinks' own thresholds for event lines."""
    logging.basicConfig(level=getattr(logging, level.strip().upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("otpagent.events").setLevel(logging.DEBUG)  # each log sink filters for itself
