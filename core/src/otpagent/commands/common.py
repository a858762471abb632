"""What every ``otpagent`` command shares: exit codes, errors as one line (or JSON), output.

A command that prints a result takes ``--json`` and then prints exactly one JSON document on
stdout, errors included (``{"error": {...}}``); people get the same error as one line on
stderr, never a traceback. The exit status says what happened (docs/cli.md):

==  =================================================================================
0   done
1   a negative answer: the code is wrong, the message failed (or expired, was
    cancelled, came back undelivered), no such message, a check found problems
2   bad input or configuration: an invalid request or config key, a missing plugin
    or extra (the message says what to install)
3   unavailable now: the store cannot be reached, or a limit refused it (the
    message says when to retry)
4   not finished in time: ``--wait`` ran out while the message is still on its way
5   held: the fraud guard holds OTPs to the number's prefix (suspected SMS pumping)
==  =================================================================================
"""

from __future__ import annotations

import enum
import json
import sqlite3
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from otpagent.errors import ConfigError, InvalidRequest, OtpagentError, OtpHeld, RateLimited
from otpagent.extras import MissingExtra

__all__ = ["ExitCode", "fail", "friendly_errors", "json_option", "open_agent", "print_json"]

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(enum.IntEnum):
    """The exit statuses of every ``otpagent`` command."""

    OK = 0
    NEGATIVE = 1
    BAD_INPUT = 2
    UNAVAILABLE = 3
    NOT_FINISHED = 4
    HELD = 5


def json_option(help_text: str = "Print the result as JSON (one document on stdout).") -> Callable[[F], F]:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def fail(code: ExitCode, kind: str, message: str, *, as_json: bool, **details: Any) -> NoReturn:
    """End the command: one line on stderr (and with ``--json``, ``{"error": ...}`` on stdout)."""
    if as_json:
        print_json({"error": {"kind": kind, "message": message, **details}, "exit_code": int(code)})
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


def _unavailable(exc: BaseException) -> bool:
    """The store could not be reached or used: PEP 249's ``OperationalError`` (SQLite's, psycopg's
    or any driver's), or a lost connection."""
    if isinstance(exc, sqlite3.OperationalError | ConnectionError | TimeoutError):
        return True
    return any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__)


def friendly_errors(func: F) -> F:
    """Turn the errors we raise on purpose, and an unreachable store, into one clear line (or a
    JSON error when the command was given ``--json``) and the exit status that says which."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return func(*args, **kwargs)
        except InvalidRequest as exc:
            errors = [{"field": e.field, "reason": e.reason, **({"index": e.index} if e.index is not None else {})}
                      for e in exc.errors]
            fail(ExitCode.BAD_INPUT, "invalid_input", f"invalid input: {'; '.join(str(e) for e in exc.errors)}",
                 as_json=as_json, errors=errors)
        except (RateLimited, OtpHeld) as exc:
            _refused(exc, as_json)
        except ConfigError as exc:
            if exc.__cause__ is not None and _unavailable(exc.__cause__):  # a backend that cannot connect
                fail(ExitCode.UNAVAILABLE, "unavailable", f"unavailable: {exc}", as_json=as_json)
            mistakes = exc.errors
            message = str(exc) if len(mistakes) == 1 else \
                f"{len(mistakes)} config errors:\n" + "\n".join(f"  {e}" for e in mistakes)
            fail(ExitCode.BAD_INPUT, "config", message, as_json=as_json,
                 errors=[{"field": e.path, "reason": e.reason} for e in mistakes])
        except MissingExtra as exc:
            fail(ExitCode.BAD_INPUT, "missing_extra", str(exc), as_json=as_json, extra=exc.extra)
        except OtpagentError as exc:
            fail(ExitCode.BAD_INPUT, "bad_input", str(exc), as_json=as_json)
        except Exception as exc:
            if not _unavailable(exc):
                raise
            detail = " ".join(str(exc).split())[:300]
            fail(ExitCode.UNAVAILABLE, "unavailable", f"the store is unavailable: {type(exc).__name__}: {detail}",
                 as_json=as_json)

    return wrapper  # type: ignore[return-value]


def _refused(exc: RateLimited | OtpHeld, as_json: bool) -> NoReturn:
    """A limit said no (exit 3) or the fraud guard holds the prefix (exit 5)."""
    if isinstance(exc, OtpHeld):
        fail(ExitCode.HELD, "otp_held", str(exc), as_json=as_json, prefix=exc.prefix,
             retry_after=round(exc.retry_after, 3))
    fail(ExitCode.UNAVAILABLE, "rate_limited", str(exc), as_json=as_json, retry_after=round(exc.retry_after, 3))


def open_agent(ctx: click.Context) -> Any:
    """The agent for the root ``--config`` (the embedded default when none)."""
    from otpagent.agent import IntelligentOTPAgent

    root = ctx.find_root().obj or {}
    return IntelligentOTPAgent(root.get("config") if isinstance(root, Mapping) else None)
