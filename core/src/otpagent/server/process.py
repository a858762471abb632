"""The app factory each process of ``otpagent serve --processes N`` builds its service with.

uvicorn starts N processes that share the listening socket; each imports this module and
calls :func:`app_from_environment`, which reads the config path, the worker choice and where
to find the delivery process (:mod:`otpagent.server.delivery`) that ``serve`` put in the
environment. Each process owns its agent and closes it when uvicorn
ends the app's lifespan. They share only the storage backend: SQLite's file locks and
PostgreSQL's ``SKIP LOCKED`` claims already make the queue safe for several processes.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette

from otpagent.agent import IntelligentOTPAgent
from otpagent.gcsettle import settle
from otpagent.logs import configure_cli_logging
from otpagent.server.app import create_app
from otpagent.server.delivery import DeliveryLink
from otpagent.server.delivery_env import PORT_FILE_ENV
from otpagent.server.settings import parse_server_settings
from otpagent.tracing_sdk import configure_sdk

__all__ = ["CONFIG_ENV", "LOG_LEVEL_ENV", "WORKERS_ENV", "app_from_environment"]

CONFIG_ENV = "OTPAGENT_CONFIG"
WORKERS_ENV = "OTPAGENT_SERVE_WORKERS"
LOG_LEVEL_ENV = "OTPAGENT_LOG_LEVEL"


def app_from_environment() -> Starlette:
    """A service app on its own agent (config from ``OTPAGENT_CONFIG``, workers in the process
    with ``OTPAGENT_SERVE_WORKERS=1``), logging as ``serve`` was told to."""
    configure_cli_logging(os.environ.get(LOG_LEVEL_ENV, "warning"))
    agent = IntelligentOTPAgent(os.environ.get(CONFIG_ENV) or None)
    try:
        configure_sdk(agent.tracing)  # each process exports its own spans
        settings = parse_server_settings(agent.config.server, run_workers=os.environ.get(WORKERS_ENV) == "1")
        port_file = os.environ.get(PORT_FILE_ENV)  # serve's delivery process, when it has one
        delivery = DeliveryLink(Path(port_file)) if port_file else None
        app = create_app(agent, settings, owns_agent=True, delivery=delivery)
        settle()  # the collector tuned for a long-running process (otpagent.gcsettle)
        return app
    except BaseException:
        agent.close()
        raise
