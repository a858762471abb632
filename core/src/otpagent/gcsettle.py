"""Garbage-collector settings for the long-running processes otpagent owns: ``otpagent run``
and ``otpagent serve`` (each of its processes), applied once start-up is over.

CPython's cyclic collector makes a young-generation pass every 700 net allocations of container
objects, and an older pass every 10 of those. A worker allocates a few small objects per message
(the message, its attempt, its events, their dicts), nearly all of them freed at once by
reference counting; yet every young pass walks every young container still alive (the messages
in flight), and the older passes walk the whole heap, including the tens of thousands of objects
that imports and configuration built at start-up and that live as long as the process. Sampled
with ``perf`` on a busy PostgreSQL worker, the collector's passes were 3.3% of the process's
CPU; settled this way they no longer show (docs/benchmarks.md, sixth round).

Two standard moves, both from the ``gc`` module's documentation:

- :func:`gc.freeze` after start-up moves everything alive into a permanent generation that no
  pass walks again (what is frozen is never collected: it was built to last the process).
- Higher thresholds: a young pass every 50,000 net container allocations, older passes more
  rarely. Garbage in cycles waits a little longer to be collected, a few megabytes at most;
  garbage without cycles (nearly all of it) is freed by reference counting as before.

An application that embeds the library keeps its own settings: nothing here runs on import.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle"]

#: :func:`gc.set_threshold` for a settled process (CPython's defaults: 700, 10, 10).
THRESHOLDS = (50_000, 20, 10)


def settle() -> None:
    """Collect what start-up left behind, freeze the rest, and collect less often from here on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
