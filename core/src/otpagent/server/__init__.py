"""The otpagent service: REST API, probes, Prometheus metrics, OpenAPI docs and a live dashboard.

Starlette is imported on first use of ``create_app`` (this package's ``plugin`` module is loaded
at every start-up and must stay light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent.server.app import create_app
    from otpagent.server.settings import ServerSettings, parse_server_settings

__all__ = ["ServerSettings", "create_app", "parse_server_settings"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from otpagent.extras import require

        require("server", "otpagent.server.create_app")
        from otpagent.server.app import create_app

        return create_app
    if name in ("ServerSettings", "parse_server_settings"):
        from otpagent.server import settings

        return getattr(settings, name)
    raise AttributeError(name)
