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
A bucket without a row is fresh (as ``gcra`` has a TAT of None): when the statement grants, it
inserts that row with its new TAT. Most OTP requests are for a recipient with no bucket yet,
so this spares them two round trips and a commit (a statement that found the row missing, one
creating it). Two first requests for one key at once both find it missing: the second insert
waits for the first to commit and fails on the key, the whole statement with it (it is one
transaction), and it runs again, now locking the row the first created.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import psycopg

from otpagent.ratelimit import gcra
from otpagent_postgres.connection import Conn

__all__ = ["acquire_buckets", "peek_bucket"]

#: Parameters: keys, intervals, bursts (arrays, one entry per bucket), cost, max_wait, now.
#: Granted when every bucket's wait is at most ``max_wait``; then every TAT moves, and the
#: buckets without a row get one.
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
ok AS (SELECT bool_and(wait <= %(max_wait)s::double precision) AS granted FROM w),
moved AS (UPDATE rate_limits r SET tat = w.new_tat FROM w, ok
          WHERE ok.granted AND w.iv > 0 AND NOT w.missing AND r.key = w.key RETURNING r.key),
added AS (INSERT INTO rate_limits (key, tat) SELECT w.key, w.new_tat FROM w, ok
          WHERE ok.granted AND w.iv > 0 AND w.missing ORDER BY w.key RETURNING key)
SELECT w.key, w.wait FROM w
"""

#: Two first requests for a key racing, again and again (each try loses only to a commit that
#: created a row this one then finds): a bounded number of tries.
_TRIES = 5


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
        try:
            rows = _decide(conn, params)
        except psycopg.errors.UniqueViolation:
            continue  # another caller created one of these buckets meanwhile: lock it this time
        waits = {row["key"]: float(row["wait"]) for row in rows}
        return [wait if wait > max_wait else max(0.0, wait) for wait in (waits[key] for key, _, _ in buckets)]
    raise RuntimeError(f"rate limit buckets {params['keys']} kept being created by others ({_TRIES} tries)")


def _decide(conn: Conn, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One try of the statement: its own transaction in autocommit; inside the caller's
    transaction (a retry after an uncertain commit), under a savepoint, so that losing the race
    for a new bucket undoes this try only."""
    if conn.autocommit:
        return conn.execute(_DECIDE, params).fetchall()
    with conn.transaction():
        return conn.execute(_DECIDE, params).fetchall()


def peek_bucket(conn: Conn, key: str, interval: float, burst: int, now: float, cost: int) -> float:
    """The wait of a request that can never be granted (``max_wait`` of -inf): a read of the
    bucket's committed state. A peek takes nothing, so it locks and writes nothing: the verify
    path peeks the caller's failure budgets on every call."""
    row = conn.execute("SELECT tat FROM rate_limits WHERE key = %s", (key,)).fetchone()
    return gcra(row["tat"] or None if row is not None else None, now, interval, burst, cost, -math.inf)[1]
