"""The ``log`` event sink: one log line per event, through the standard ``logging`` module.

Embedded in an application, the lines go to the logger ``otpagent.events`` and from there
wherever the application's logging sends them: its handlers, levels and formatters apply, and
nothing is printed behind its back. The CLI and ``otpagent serve`` install their own handler
(see :func:`otpagent.logs.configure_cli_logging`).

Each event type logs at the level its news deserves: problems (``failed``, ``undelivered``,
``expired``, a circuit opening, a spent budget) at WARNING, progress at INFO, each ``attempt``
at DEBUG. The sink's ``level`` is its threshold (case-insensitive): ``"warning"`` logs only the
problems. The line is ``key=value`` pairs (``format: "console"``) or one JSON object
(``format: "json"``); the event's fields are also attached to the record as
``record.otpagent_event`` for structured handlers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from otpagent.errors import ConfigError
from otpagent.model import Event
from otpagent.protocols import PluginContext
from otpagent.settings import describes, setting, structure

__all__ = ["EVENT_LEVELS", "LogSink", "create_log_sink", "parse_level"]

LOGGER_NAME = "otpagent.events"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: The level each event type is logged at (unlisted types: INFO).
EVENT_LEVELS: Mapping[str, int] = {
    "attempt": logging.DEBUG,
    "failed": logging.WARNING,
    "undelivered": logging.WARNING,
    "expired": logging.WARNING,
    "circuit_opened": logging.WARNING,
    "budget_exhausted": logging.WARNING,
    "otp_rejected": logging.INFO,
    "fraud_prefix_held": logging.WARNING,
}


def parse_level(value: object, path: str) -> int:
    """A level name (``debug``, ``info``, ``warning``, ``error``; any case) as a logging level."""
    if isinstance(value, str) and value.strip().lower() in _LEVELS:
        return _LEVELS[value.strip().lower()]
    raise ConfigError(path, f"must be one of debug, info, warning, error (any case), got {value!r}")


class LogSink:
    """Logs each event to ``otpagent.events`` at its level, if at or above the sink's threshold."""

    def __init__(self, *, fmt: str = "console", level: int = logging.INFO,
                 logger: logging.Logger | None = None) -> None:
        self._json = fmt == "json"
        self._threshold = level
        self._logger = logger or logging.getLogger(LOGGER_NAME)

    def emit(self, event: Event) -> None:
        level = EVENT_LEVELS.get(event.type, logging.INFO)
        if level < self._threshold or not self._logger.isEnabledFor(level):
            return
        fields: dict[str, Any] = {"event": f"message_{event.type}", "message_id": event.message_id,
                                  **dict(event.data)}
        self._logger.log(level, self._render(fields), extra={"otpagent_event": fields})

    def _render(self, fields: Mapping[str, Any]) -> str:
        if self._json:
            return json.dumps(fields, default=str, sort_keys=True)
        head = fields["event"]
        rest = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                        for k, v in sorted(fields.items()) if k != "event" and v is not None)
        return f"{head} {rest}" if rest else str(head)

    def close(self) -> None:
        """Nothing to flush: the logging handlers own their streams."""


@attrs.frozen
class LogSinkSection:
    """A ``{"plugin": "log"}`` entry of ``sinks``: events as log lines (the default sink)."""

    plugin: str = setting("log", choices=("log",))
    format: str = setting("console", doc="console or json (any case)")
    level: str = setting("info", doc="The lowest level logged: debug, info, warning or error (any case)")

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if self.format.strip().lower() not in ("console", "json"):
            yield "format", f"must be 'console' or 'json', got {self.format!r}"
        try:
            parse_level(self.level, "level")
        except ConfigError as exc:
            yield "level", exc.reason


@describes(LogSinkSection)
def create_log_sink(settings: Mapping[str, Any], context: PluginContext) -> LogSink:
    parsed = structure(LogSinkSection, settings, path="sinks[]")
    return LogSink(fmt=parsed.format.strip().lower(), level=parse_level(parsed.level, "sinks[].level"))
