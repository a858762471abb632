"""The queues people would pick instead of otpagent, driven beside it on equal no-op work.

Each driver lives in its own module and is imported only when used, so a missing peer
library costs nothing but its own rows ("not available"). ``otpagent-sqlite`` and
``otpagent-postgres`` drive otpagent itself through the same harness.
"""

from __future__ import annotations

import importlib

from bench.peers.base import PeerDriver

__all__ = ["PEERS", "load"]

#: peer key -> "module:class"
PEERS: dict[str, str] = {
    "otpagent-sqlite": "bench.peers.otpagent_peer:OtpagentSqlite",
    "otpagent-postgres": "bench.peers.otpagent_peer:OtpagentPostgres",
    "pgqueuer": "bench.peers.pgqueuer_peer:PgQueuerPeer",
    "procrastinate": "bench.peers.procrastinate_peer:ProcrastinatePeer",
    "huey": "bench.peers.huey_peer:HueyPeer",
    "dramatiq": "bench.peers.dramatiq_peer:DramatiqPeer",
    "celery": "bench.peers.celery_peer:CeleryPeer",
}


def load(key: str) -> PeerDriver:
    """The driver registered as ``key`` (its module imports no peer library at import time)."""
    module_name, _, class_name = PEERS[key].partition(":")
    driver: PeerDriver = getattr(importlib.import_module(module_name), class_name)()
    return driver
