"""Baselines on bare ``sqlite3``: what the disk and SQLite allow, with otpagent's own schema.

Each baseline opens the database the way the agent does (WAL, ``synchronous=FULL``,
``BEGIN IMMEDIATE`` for writes) and does the least work that still means the same thing:
one message row per transaction, a batch per transaction, a claim of a batch then one
acknowledgement per message, an OTP issue and a verify. The ratio to these shows what the
agent's own code costs on top of the physical limit (mostly fsync).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import in_threads
from otpagent.storage.rows import MESSAGE_COLUMNS
from otpagent.storage.sqlite_schema import migrate

__all__ = [
    "INSERT",
    "claim_ack_loop",
    "connect",
    "fill",
    "insert_batches",
    "insert_single",
    "insert_single_threads",
    "message_row",
    "message_rows",
    "otp_pairs",
    "otp_pairs_threads",
]

INSERT = f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})"
_BODY = "Security alert: a new sign-in to your account. If this was not you, reset your password."


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection configured like the agent's, on a database migrated to the agent's schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    migrate(conn)
    return conn


def message_row(i: int, now: float, *, status: str = "queued", message_type: str = "alert",
                priority: int = 3, phone: str | None = None) -> tuple[Any, ...]:
    """One ``messages`` row (in ``MESSAGE_COLUMNS`` order), as the agent would store it."""
    values: dict[str, Any] = {c: None for c in MESSAGE_COLUMNS}
    values.update({
        "id": f"msg_{uuid.uuid4().hex}", "message_type": message_type, "priority": priority, "body": _BODY,
        "phone_number": phone or f"+4477{i % 100_000_000:08d}", "metadata": None, "status": status,
        "created_at": now, "updated_at": now, "due_at": now, "route": "[]", "route_index": 0,
        "channel_attempts": 0, "attempt_count": 0, "cost": 0.0,
    })
    return tuple(values[c] for c in MESSAGE_COLUMNS)


def message_rows(start: int, count: int, now: float) -> Iterator[tuple[Any, ...]]:
    for i in range(start, start + count):
        yield message_row(i, now)


def insert_single(path: Path, count: int, budget: float, sync: str = "FULL") -> tuple[int, float]:
    """``count`` single-row insert transactions (or as many as fit in ``budget`` seconds)."""
    conn = connect(path, sync)
    now = time.time()
    done = 0
    start = time.perf_counter()
    deadline = start + budget
    try:
        while done < count and time.perf_counter() < deadline:
            row = message_row(done, now)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, row)
            conn.execute("COMMIT")
            done += 1
        return done, time.perf_counter() - start
    finally:
        conn.close()


def insert_single_threads(path: Path, count: int, budget: float, threads: int) -> tuple[int, float]:
    """:func:`insert_single` from ``threads`` threads at once, each on its own connection
    (SQLite's own locking between them, as separate callers of bare ``sqlite3`` would have).
    """
    connect(path).close()  # migrate once, before the threads race to
    return in_threads(threads, lambda _i: insert_single(path, count // threads, budget)[0])


def otp_pairs_threads(path: Path, recipients: Sequence[str], budget: float, threads: int) -> tuple[int, float]:
    """:func:`otp_pairs` from ``threads`` threads at once, each on its own share of recipients."""
    connect(path).close()
    return in_threads(threads, lambda i: otp_pairs(path, recipients[i::threads], budget)[0])


def insert_batches(path: Path, count: int, batch: int, budget: float, sync: str = "FULL") -> tuple[int, float]:
    """Batched inserts: ``batch`` rows per transaction through ``executemany``."""
    conn = connect(path, sync)
    now = time.time()
    done = 0
    start = time.perf_counter()
    deadline = start + budget
    try:
        while done < count and time.perf_counter() < deadline:
            rows = [message_row(done + j, now) for j in range(batch)]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
            done += batch
        return done, time.perf_counter() - start
    finally:
        conn.close()


def fill(conn: sqlite3.Connection, start: int, count: int, chunk: int = 20_000) -> None:
    """Queue ``count`` messages fast (setup, not measured): big transactions, plain executemany."""
    now = time.time()
    for offset in range(0, count, chunk):
        n = min(chunk, count - offset)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, message_rows(start + offset, n, now))
        conn.execute("COMMIT")


def claim_ack_loop(path: Path, count: int, batch: int, budget: float, sync: str = "FULL") -> tuple[int, float]:
    """The bare queue loop on ``count`` queued messages: claim ``batch`` in one ``BEGIN IMMEDIATE``
    (select by the ready index + mark sending), then acknowledge each (``sent``) in its own commit.
    """
    conn = connect(path, sync)
    fill(conn, 0, count)
    done = 0
    start = time.perf_counter()
    deadline = start + budget
    try:
        while done < count and time.perf_counter() < deadline:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM messages WHERE status IN ('queued', 'scheduled', 'retrying') AND due_at <= ? "
                "ORDER BY priority DESC, due_at, seq LIMIT ?", (now, batch))]
            conn.executemany("UPDATE messages SET status = 'sending', lease_owner = 'w', lease_expires_at = ?, "
                             "updated_at = ? WHERE id = ?", [(now + 60, now, i) for i in ids])
            conn.execute("COMMIT")
            if not ids:
                break
            for message_id in ids:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE messages SET status = 'sent', lease_owner = NULL, lease_expires_at = NULL, "
                             "updated_at = ? WHERE id = ? AND lease_owner = 'w'", (time.time(), message_id))
                conn.execute("COMMIT")
                done += 1
        return done, time.perf_counter() - start
    finally:
        conn.close()


def otp_pairs(path: Path, recipients: Sequence[str], budget: float) -> tuple[int, float]:
    """Issue + verify per recipient: an HMAC of the code, one transaction storing the OTP and its
    message, one transaction finding, comparing and consuming it.
    """
    conn = connect(path)
    key = secrets.token_bytes(32)
    done = 0
    start = time.perf_counter()
    deadline = start + budget
    try:
        for i, recipient in enumerate(recipients):
            if time.perf_counter() >= deadline:
                break
            now = time.time()
            code = f"{secrets.randbelow(10**6):06d}"
            digest = hmac.new(key, f"{recipient}\x00login\x00{code}".encode(), hashlib.sha256).digest()
            row = message_row(i, now, message_type="otp", priority=3, phone=recipient)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO otps (id, recipient, purpose, code_hash, created_at, expires_at, message_id) "
                         "VALUES (?, ?, 'login', ?, ?, ?, ?)", (row[0], recipient, digest, now, now + 300, row[0]))
            conn.execute(INSERT, row)
            conn.execute("COMMIT")
            candidate = hmac.new(key, f"{recipient}\x00login\x00{code}".encode(), hashlib.sha256).digest()
            conn.execute("BEGIN IMMEDIATE")
            found = conn.execute("SELECT id, code_hash FROM otps WHERE recipient = ? AND purpose = 'login' "
                                 "AND consumed_at IS NULL ORDER BY created_at DESC LIMIT 1", (recipient,)).fetchone()
            if found is None or not hmac.compare_digest(bytes(found[1]), candidate):
                conn.execute("ROLLBACK")
                raise RuntimeError("raw OTP baseline failed to verify its own code")
            conn.execute("UPDATE otps SET consumed_at = ? WHERE id = ?", (time.time(), found[0]))
            conn.execute("COMMIT")
            done += 1
        return done, time.perf_counter() - start
    finally:
        conn.close()
