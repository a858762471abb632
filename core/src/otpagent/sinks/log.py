"""The ``log`` event sink: one structured log line per event (structlog; JSON or console).

Events never carry OTP codes or credentials, so they are safe to log as they are.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

from otpagent.errors import ConfigError
from otpagent.model import Event
from otpagent.protocols import PluginContext

__all__ = ["LogSink", "create_log_sink"]


class LogSink:
    """Writes events with their own processor chain, independent of the app's logging setup."""

    def __init__(self, *, fmt: str = "console", stream: TextIO | None = None, level: str = "info") -> None:
        renderer: Any = (
            structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
        )
        self._logger = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stderr),
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True), renderer],
        )
        self._level = getattr(logging, level.upper())

    def emit(self, event: Event) -> None:
        if self._level > logging.INFO:
            return
        self._logger.info(f"message_{event.type}", message_id=event.message_id, **dict(event.data))

    def close(self) -> None:
        """Nothing to flush: PrintLogger writes through."""


def create_log_sink(settings: Mapping[str, Any], context: PluginContext) -> LogSink:
    fmt = settings.get("format", "console")
    if fmt not in ("console", "json"):
        raise ConfigError("sinks[].format", f"must be 'console' or 'json', got {fmt!r}")
    level = settings.get("level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("sinks[].level", "must be debug, info, warning or error")
    stream = settings.get("stream")
    return LogSink(fmt=fmt, level=level, stream=stream if hasattr(stream, "write") else None)
