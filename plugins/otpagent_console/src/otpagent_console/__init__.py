"""otpagent-console: a channel that prints messages and records them in a JSON-lines outbox."""

from otpagent_console.channel import ConsoleChannel

__all__ = ["ConsoleChannel"]
