"""Optional parts of otpagent and the extras that install them.

The library itself needs only what :mod:`otpagent`'s queue, routing and OTP rules use. The
service (``otpagent serve``: Starlette, uvicorn, Prometheus), signed outgoing webhooks (httpx,
standardwebhooks), the terminal tables of the CLI (rich) and traces (OpenTelemetry) are extras,
so an app that only embeds the library does not carry a web server. A feature that needs a
missing extra says which one to install instead of failing with an ImportError.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from otpagent.errors import OtpagentError

__all__ = ["EXTRAS", "MissingExtra", "require"]

#: extra -> (the modules it provides, what it is for).
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "server": (("starlette", "uvicorn", "prometheus_client", "httpx", "standardwebhooks"),
               "the HTTP service (otpagent serve)"),
    "webhooks": (("httpx", "standardwebhooks"), "signed outgoing webhooks"),
    "cli": (("rich",), "the command line's tables and progress bars"),
    "otel": (("opentelemetry.trace",), "OpenTelemetry traces"),
}


class MissingExtra(OtpagentError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, extra: str, feature: str, missing: Iterable[str]) -> None:
        self.extra = extra
        self.missing = tuple(missing)
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'otpagent[{extra}]' "
                         f"(missing: {', '.join(self.missing)})")


def require(extra: str, feature: str | None = None) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` can be imported."""
    modules, purpose = EXTRAS[extra]
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise MissingExtra(extra, feature or purpose, missing)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (tests), or broken
        return False
