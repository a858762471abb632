"""OTP issue and verification in SQL, serialised per recipient with advisory locks.

Row locks alone would let many concurrent guesses for one recipient each read "4 failures so
far" and all be compared; a transaction-scoped advisory lock on the recipient makes every
issue and verify for that recipient take its turn, across every worker and machine.
"""

from __future__ import annotations

import hmac

from otpagent.protocols import NewMessage, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.storage.rows import message_to_row, queued_event
from otpagent_postgres.connection import Conn
from otpagent_postgres.queue import _INSERT_MESSAGE, insert_event, notify_enqueued

__all__ = ["issue_otp", "verify_otp"]


def _lock_recipient(conn: Conn, schema: str, recipient: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (f"otpagent-otp:{schema}", recipient))


def issue_otp(
    conn: Conn, schema: str, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int,
    now: float, uncertain: bool,
) -> tuple[OtpIssueOutcome, float]:
    _lock_recipient(conn, schema, otp.recipient)
    if uncertain and conn.execute("SELECT 1 FROM otps WHERE id = %s", (otp.id,)).fetchone():
        return OtpIssueOutcome.ISSUED, 0.0
    recent = conn.execute(
        "SELECT created_at FROM otps WHERE recipient = %s AND created_at > %s ORDER BY created_at",
        (otp.recipient, now - 3600.0),
    ).fetchall()
    if recent and now - recent[-1]["created_at"] < cooldown_seconds:
        return OtpIssueOutcome.COOLDOWN, recent[-1]["created_at"] + cooldown_seconds - now
    if len(recent) >= max_per_hour:
        return OtpIssueOutcome.HOURLY_LIMIT, recent[-max_per_hour]["created_at"] + 3600.0 - now
    conn.execute(
        "UPDATE otps SET invalidated_at = %s WHERE recipient = %s AND purpose = %s "
        "AND consumed_at IS NULL AND invalidated_at IS NULL",
        (now, otp.recipient, otp.purpose),
    )
    conn.execute(
        "INSERT INTO otps (id, recipient, purpose, code_hash, created_at, expires_at, message_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (otp.id, otp.recipient, otp.purpose, otp.code_hash, otp.created_at, otp.expires_at, otp.message_id),
    )
    m = message.message
    conn.execute(_INSERT_MESSAGE, message_to_row(m, message.fingerprint))
    insert_event(conn, queued_event(m, now))
    notify_enqueued(conn, schema)
    return OtpIssueOutcome.ISSUED, 0.0


def verify_otp(
    conn: Conn, schema: str, recipient: str, purpose: str, candidate_hash: bytes, *, max_failures: int,
    lockout_seconds: float, now: float,
) -> OtpVerifyOutcome:
    _lock_recipient(conn, schema, recipient)
    fail = conn.execute("SELECT failures, first_failure_at FROM otp_failures WHERE recipient = %s",
                        (recipient,)).fetchone()
    failures = 0
    if fail is not None:
        if now - fail["first_failure_at"] >= lockout_seconds:
            conn.execute("DELETE FROM otp_failures WHERE recipient = %s", (recipient,))
        else:
            failures = fail["failures"]
    if failures >= max_failures:
        return OtpVerifyOutcome.LOCKED
    row = conn.execute(
        "SELECT id, code_hash, expires_at FROM otps WHERE recipient = %s AND purpose = %s "
        "AND consumed_at IS NULL AND invalidated_at IS NULL ORDER BY created_at DESC LIMIT 1",
        (recipient, purpose),
    ).fetchone()
    stored = bytes(row["code_hash"]) if row is not None else b"\0" * len(candidate_hash)
    # Compare even when there is no code, so timing does not tell whether one exists.
    matches = hmac.compare_digest(stored, candidate_hash) and row is not None
    if row is not None and matches and row["expires_at"] > now:
        conn.execute("UPDATE otps SET consumed_at = %s WHERE id = %s", (now, row["id"]))
        conn.execute("DELETE FROM otp_failures WHERE recipient = %s", (recipient,))
        return OtpVerifyOutcome.VERIFIED
    if matches:
        # The right code, too late: say so (only someone holding the code learns it).
        return OtpVerifyOutcome.EXPIRED
    # The try that reaches the limit restarts the window: a lockout lasts its full length.
    conn.execute(
        "INSERT INTO otp_failures AS f (recipient, failures, first_failure_at) VALUES (%s, 1, %s) "
        "ON CONFLICT (recipient) DO UPDATE SET failures = f.failures + 1, "
        "first_failure_at = CASE WHEN f.failures + 1 >= %s THEN excluded.first_failure_at "
        "ELSE f.first_failure_at END",
        (recipient, now, max_failures),
    )
    if failures + 1 >= max_failures:
        return OtpVerifyOutcome.TOO_MANY_ATTEMPTS
    return OtpVerifyOutcome.INVALID
