"""OTP issue and verification in SQL, serialised per recipient with advisory locks.

Row locks alone would let many concurrent guesses at one code each read "4 failures so far" and
all be compared; a transaction-scoped advisory lock on the recipient makes every issue and
verify for that recipient take its turn, across every worker and machine.
"""

from __future__ import annotations

from otpagent.protocols import NewMessage, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.storage import sqlrules
from otpagent.storage.rows import message_to_row, queued_event
from otpagent_postgres.connection import Conn, PgTx
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
    outcome = sqlrules.issue_otp(PgTx(conn), otp, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour,
                                 now=now)
    if outcome[0] is OtpIssueOutcome.ISSUED:
        m = message.message
        conn.execute(_INSERT_MESSAGE, message_to_row(m, message.fingerprint))
        insert_event(conn, queued_event(m, now))
        notify_enqueued(conn, schema)
    return outcome


def verify_otp(
    conn: Conn, schema: str, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int, now: float,
) -> OtpVerifyOutcome:
    _lock_recipient(conn, schema, recipient)
    return sqlrules.verify_otp(PgTx(conn), recipient, purpose, candidate_hash, max_attempts=max_attempts, now=now)
