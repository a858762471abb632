"""Exceptions raised at the edges of otpagent.

Inside the dispatcher, failures are values (`SendResult`); exceptions are for bad input at the
API edge and for configuration mistakes, and each one names what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "FieldError",
    "InvalidRequest",
    "LimitsRefused",
    "OtpHeld",
    "OtpagentError",
    "PluginConflict",
    "PluginLoadFailed",
    "PluginNotFound",
    "RateLimited",
    "collect_config_errors",
]


class OtpagentError(Exception):
    """Base class for every error otpagent raises on purpose."""


@attrs.frozen
class FieldError:
    """One problem with one field of one input, e.g. entry 3's ``phone_number``."""

    field: str
    reason: str
    index: int | None = None

    def __str__(self) -> str:
        where = self.field if self.index is None else f"[{self.index}].{self.field}"
        return f"{where}: {self.reason}"


class InvalidRequest(OtpagentError, ValueError):
    """A message request (or a batch of them) is invalid; nothing was enqueued."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        shown = "; ".join(str(e) for e in self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"invalid request: {shown}{more}")

    def __reduce__(self) -> tuple[type[InvalidRequest], tuple[list[FieldError]]]:
        return (type(self), (self.errors,))

    @classmethod
    def single(cls, field: str, reason: str, index: int | None = None) -> InvalidRequest:
        return cls([FieldError(field, reason, index)])


class ConfigError(OtpagentError, ValueError):
    """The configuration is invalid; the message names the key path, e.g. ``channels.SMS.cost``."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"config error at {path or '<root>'}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so an error raised in a worker process reaches the parent intact.
        return (type(self), (self.path, self.reason))

    @property
    def errors(self) -> list[ConfigError]:
        """Each mistake this error reports (one; :class:`ConfigErrors` holds several)."""
        return [self]

    @staticmethod
    def combine(errors: Sequence[ConfigError]) -> ConfigError:
        """One error for all of ``errors`` (each kept in ``.errors``): itself when there is one."""
        flat = [e for error in errors for e in error.errors]
        if not flat:
            raise ValueError("no config error to combine")
        return flat[0] if len(flat) == 1 else ConfigErrors(flat)


class ConfigErrors(ConfigError):
    """Several configuration mistakes found in one pass; ``errors`` lists each, in order.

    ``path`` and ``reason`` are the first one's, so code that handles a single error still works.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self._errors = [e for error in errors for e in error.errors]
        super().__init__(self._errors[0].path, self._errors[0].reason)
        self.args = (f"{len(self._errors)} config errors: " + "; ".join(str(e) for e in self._errors),)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._errors,))

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)


T = TypeVar("T")


def collect_config_errors(errors: list[ConfigError], check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``check(*args, **kwargs)``; or, when it raises a :class:`ConfigError`, None with each of its
    mistakes added to ``errors`` (so that one run can report every mistake, then
    ``raise ConfigError.combine(errors)``)."""
    try:
        return check(*args, **kwargs)
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None


class PluginNotFound(ConfigError):
    """The configuration names a plugin that is not installed."""


class PluginLoadFailed(PluginNotFound):
    """The configuration needs a plugin that is installed but failed to import or to register."""


class PluginConflict(ConfigError):
    """The configuration names something that two plugins register under the same name."""


class RateLimited(OtpagentError):
    """An OTP or message was refused by a limit; ``retry_after`` says when to try again."""

    def __init__(self, reason: str, retry_after: float) -> None:
        self.reason = reason
        self.retry_after = max(0.0, retry_after)
        super().__init__(f"rate limited ({reason}); retry after {self.retry_after:.1f}s")

    def __reduce__(self) -> tuple[type[RateLimited], tuple[str, float]]:
        return (type(self), (self.reason, self.retry_after))


class LimitsRefused(RateLimited):
    """The rate-limit buckets a call was asked to take (``buckets=`` of ``send_otp`` and
    ``verify_otp``) did not all have a token: none was taken and nothing else was written.

    ``waits`` holds each bucket's wait in the order given (positive for each bucket that had no
    token); ``retry_after`` is the longest, and ``reason`` names that bucket's key.
    """

    def __init__(self, keys: Sequence[str], waits: Sequence[float]) -> None:
        self.keys = tuple(keys)
        self.waits = tuple(waits)
        longest = max(range(len(self.waits)), key=self.waits.__getitem__)
        super().__init__(f"rate limit {self.keys[longest]}", self.waits[longest])

    def __reduce__(self) -> tuple[type[LimitsRefused], tuple[tuple[str, ...], tuple[float, ...]]]:  # type: ignore[override]
        return (type(self), (self.keys, self.waits))


class OtpHeld(OtpagentError):
    """An OTP to a destination prefix the fraud guard holds (suspected SMS pumping); nothing was
    issued or sent. The hold ends by itself at ``until`` (when requests have calmed down) or
    when an operator releases it (``otpagent fraud release <prefix>``)."""

    def __init__(self, prefix: str, until: float, now: float) -> None:
        self.prefix = prefix
        self.until = until
        self.retry_after = max(0.0, until - now)
        super().__init__(f"OTPs to numbers starting {prefix} are held by the fraud guard (suspected SMS pumping) "
                         f"for up to {self.retry_after:.0f} s more; nothing was sent")

    def __reduce__(self) -> tuple[type[OtpHeld], tuple[str, float, float]]:
        return (type(self), (self.prefix, self.until, self.until - self.retry_after))
