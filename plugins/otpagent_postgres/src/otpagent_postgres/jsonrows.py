"""Rows sent as JSON arrays of their values, read on the server by position.

A batch of records is one JSON parameter: encoded in C by orjson on the client
(:mod:`otpagent.jsontext`; psycopg's array dumpers walk every element in Python), parsed once
as ``jsonb`` on the server, each record's values then read by position (``a->>i``) and cast to
their column's type. Arrays, not objects: there are no keys to encode or parse. Numbers keep
their exact digits in ``jsonb`` (orjson writes the shortest text that reads back to the same
double), so a double reads back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["at_position", "by_position"]


def at_position(index: int, kind: str) -> str:
    """``(a->>3)::integer``: the value at ``index`` of the row array ``a`` as SQL type ``kind``
    (text needs no cast)."""
    return f"(a->>{index})" + ("" if kind == "text" else "::" + kind)


def by_position(fields: Sequence[tuple[str, str]]) -> str:
    """``(a->>0)::integer AS k, (a->>1) AS id, ...`` for ``(name, SQL type)`` pairs, in the
    order the values travel in each array."""
    return ", ".join(f"{at_position(i, kind)} AS {name}" for i, (name, kind) in enumerate(fields))
