"""GCRA token buckets (the ``RateLimits`` capability) decided inside PostgreSQL, one statement a call.

A bucket that every request touches (one API key's request limit, a channel's rate limit
across the fleet, ``otp.global_per_minute``) is one hot row: each caller must hold its lock from
reading the bucket to committing the new TAT. Read by the client, decided in Python and
written back, that hold spans several round trips, and every caller of that key queues behind
it (on this machine, about 180 verify requests a second for one API key, whatever the number
of ``serve`` processes). Here one statement locks the buckets in key order, decides, and
stores, and commits on its own: the lock is held for the statement and its commit only.

The rule is :func:`otpagent.ratelimit.gcra`, written once more in SQL (same operations in the
same order, so the same doubles); the test suite checks the two agree on random sequences.
A bucket without a row cannot be locked: the statement then grants nothing and reports it
missing, the rows are created (``ON CONFLICT DO NOTHING``, committed at once), and the
statement runs again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from otpagent.ratelimit import gcra
from otpagent_postgres.connection import Conn

__all__ = ["acquire_buckets", "peek_bucket"]

#: Parameters: keys, intervals, bursts (arrays, one entry per bucket), cost, max_wait, now.
#: Granted when every bucket exists and its wait is at most ``max_wait``; then every TAT moves.
_DECIDE = b"""
WITH b AS (SELECT * FROM unnest(%(keys)s::text[], %(intervals)s::double precision[], %(bursts)s::integer[])
           AS b(key, iv, burst)),
cur AS (SELECT key, tat FROM rate_limits WHERE key = ANY(%(keys)s::text[]) ORDER BY key FOR UPDATE),
d AS (SELECT b.key, b.iv, c.key IS NULL AS missing,
             GREATEST(c.tat, %(now)s::double precision) + b.iv * %(cost)s::integer AS new_tat, b.burst
      FROM b LEFT JOIN cur c ON c.key = b.key),
w AS (SELECT key, iv, missing, new_tat,
             CASE WHEN iv <= 0 THEN 0.0 ELSE new_tat - iv * GREATEST(burst, 1) - %(now)s::double precision END
             AS wait FROM d),
ok AS (SELECT bool_and(wait <= %(max_wait)s::double precision) AND NOT bool_or(missing) AS granted FROM w),
moved AS (UPDATE rate_limits r SET tat = w.new_tat FROM w, ok
          WHERE ok.granted AND w.iv > 0 AND r.key = w.key RETURNING r.key)
SELECT w.key, w.wait, w.missing, ok.granted FROM w, ok
"""

_CREATE = (b"INSERT INTO rate_limits (key, tat) SELECT k, 0 FROM unnest(%s::text[]) AS k ORDER BY k "
           b"ON CONFLICT DO NOTHING")

#: A bucket whose row vanished again between its creation and the decision (cleanup deletes
#: rows of idle buckets) is created once more, a bounded number of times.
_TRIES = 3


def acquire_buckets(conn: Conn, buckets: Sequence[tuple[str, float, int]], now: float, *, cost: int = 1,
                    max_wait: float = 0.0) -> list[float]:
    """Take ``cost`` tokens from every bucket ``(key, interval, burst)`` (distinct keys), or
    from none, as ``gcra`` decides each. Each bucket's wait, in the order given: ``max(0,
    wait)`` where the bucket could grant (a reservation ahead when positive), the wait itself
    where it refused (above ``max_wait``); granted when no bucket refused.

    Runs in autocommit (each statement its own transaction), or inside the caller's
    transaction on a retry after an uncertain commit.
    """
    if not buckets:
        return []
    params = {"keys": [key for key, _, _ in buckets], "intervals": [float(iv) for _, iv, _ in buckets],
              "bursts": [int(burst) for _, _, burst in buckets], "cost": cost, "max_wait": max_wait, "now": now}
    for _ in range(_TRIES):
        rows = conn.execute(_DECIDE, params).fetchall()
        missing = [row["key"] for row in rows if row["missing"]]
        if not missing:
            waits = {row["key"]: float(row["wait"]) for row in rows}
            return [wait if wait > max_wait else max(0.0, wait) for wait in (waits[key] for key, _, _ in buckets)]
        conn.execute(_CREATE, (missing,))
    raise RuntimeError(f"rate limit buckets {missing} were deleted {_TRIES} times while being created")


def peek_bucket(conn: Conn, key: str, interval: float, burst: int, now: float, cost: int) -> float:
    """The wait of a request that can never be granted (``max_wait`` of -inf): a read of the
    bucket's committed state. A peek takes nothing, so it locks and writes nothing: the verify
    path peeks the caller's failure budgets on every call."""
    row = conn.execute("SELECT tat FROM rate_limits WHERE key = %s", (key,)).fetchone()
    return gcra(row["tat"] or None if row is not None else None, now, interval, burst, cost, -math.inf)[1]
