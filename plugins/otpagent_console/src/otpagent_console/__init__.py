"""otpagent-console: a channel that prints messages and records them in a JSON-lines outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent_console.channel import ConsoleChannel

__all__ = ["ConsoleChannel"]


def __getattr__(name: str) -> Any:
    """``ConsoleChannel`` is imported on first use: otpagent loads this package at every start."""
    if name == "ConsoleChannel":
        from otpagent_console.channel import ConsoleChannel

        return ConsoleChannel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
