"""Naming a worker: ``host:pid:random``, unique across a fleet and readable in ``otpagent workers``."""

from __future__ import annotations

import os
import secrets

__all__ = ["new_worker_id"]


def new_worker_id() -> str:
    """A fresh worker id. The host name comes from ``os.uname`` (what ``socket.gethostname``
    returns on POSIX) so that importing otpagent does not import ``socket`` and ``uuid``."""
    host = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "localhost")
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"
