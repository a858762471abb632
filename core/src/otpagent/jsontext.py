"""JSON text for what otpagent writes to and reads from its storage (orjson, with the standard
library's behaviour kept where the two differ).

Every processed message carries JSON through the storage: its route and channel lists, its
attempt's and outcome's event data, and on PostgreSQL the rows of a whole group of outcomes or
of a batch of enqueued messages (:mod:`otpagent_postgres.jsonrows`). The standard library's C
encoder spends most of that time in ``repr`` of each float (a timestamp: half a microsecond)
and came to about 9% of a PostgreSQL worker's CPU; orjson writes the same values in a tenth of
the time and reads them in about a third.

Both write the shortest text that reads back to the same double, so values are unchanged; the
text is compact (``{"a":1}``, no spaces) and UTF-8 rather than ``\\u`` escapes, which JSON
readers treat alike. Where orjson refuses what the standard library accepts, the standard
library answers: integers beyond 64 bits, and on reading ``NaN``/``Infinity`` (written by
releases before this module, never by it: orjson writes ``null`` for a non-finite float). Dict
keys that are not strings are written as strings, as ``json.dumps`` does.

Not used for what must stay byte-for-byte stable across releases: an idempotency key's
request fingerprint hashes ``json.dumps(..., sort_keys=True)`` (:mod:`otpagent.intake`).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

__all__ = ["dumps", "loads"]

#: orjson, imported on first use rather than with otpagent (2.5 ms of the import otherwise).
_orjson: ModuleType | None = None


def _lib() -> ModuleType:
    global _orjson
    if _orjson is None:
        import orjson

        _orjson = orjson
    return _orjson


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    lib = _orjson or _lib()
    try:
        text: str = lib.dumps(value, option=lib.OPT_NON_STR_KEYS).decode()
        return text
    except lib.JSONEncodeError:
        # An integer beyond 64 bits (or a type neither encoder knows: then json raises too).
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text``."""
    lib = _orjson or _lib()
    try:
        return lib.loads(text)
    except lib.JSONDecodeError:
        # NaN/Infinity from an older release, or an integer beyond 64 bits (json raises for
        # text that is not JSON at all).
        return json.loads(text)
