"""The environment ``serve`` hands its delivery process and its API processes (see
:mod:`otpagent.server.delivery`); apart, so that ``otpagent run`` reads it without the server
extra installed."""

from __future__ import annotations

__all__ = ["PARENT_ENV", "PORT_FILE_ENV"]

#: Where the delivery process writes the port of its own figures; set for it and for every API
#: process of ``serve``, which read them there.
PORT_FILE_ENV = "OTPAGENT_DELIVERY_PORT_FILE"
#: The pid of the ``serve`` that started the delivery process: the child ends when it is gone.
PARENT_ENV = "OTPAGENT_DELIVERY_PARENT"
