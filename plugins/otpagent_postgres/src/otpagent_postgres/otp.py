"""OTP issue and verification in SQL, serialised per recipient with advisory locks.

Row locks alone would let many concurrent guesses at one code each read "4 failures so far" and
all be compared; a transaction-scoped advisory lock on the recipient makes every issue and
verify for that recipient take its turn, across every worker and machine.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from otpagent.protocols import EnqueueResult, NewMessage, OtpIssue, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.storage import batch_issue, sqlrules
from otpagent_postgres.connection import Conn, PgTx
from otpagent_postgres.insert import insert_statement
from otpagent_postgres.queue import enqueue, notify_enqueued

__all__ = ["issue_batch", "issue_otp", "verify_otp"]


def _lock_recipient(conn: Conn, schema: str, recipient: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (f"otpagent-otp:{schema}", recipient))


#: The writes of an issue (``sqlrules.INVALIDATE_OTPS`` and ``INSERT_OTP``) ahead of the
#: enqueue's statement (``insert.insert_statement``), all one statement: the server parses,
#: plans and runs one instead of five, and the client sends one.
_ISSUE_WRITES = (f"WITH inv AS ({sqlrules.INVALIDATE_OTPS}), o AS ({sqlrules.INSERT_OTP}), ".replace("?", "%s")
                 ).encode()


def issue_otp(
    conn: Conn, schema: str, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int,
    now: float, uncertain: bool,
) -> tuple[OtpIssueOutcome, float]:
    _lock_recipient(conn, schema, otp.recipient)
    if uncertain and conn.execute("SELECT 1 FROM otps WHERE id = %s", (otp.id,)).fetchone():
        return OtpIssueOutcome.ISSUED, 0.0
    outcome = sqlrules.issue_decision(PgTx(conn), otp, cooldown_seconds=cooldown_seconds,
                                      max_per_hour=max_per_hour, now=now)
    if outcome[0] is OtpIssueOutcome.ISSUED:
        # The UPDATE and the INSERT of ``otps`` run in one snapshot: the new code is not among
        # those the UPDATE invalidates, as when they ran one after the other.
        enqueue_sql, enqueue_params = insert_statement([message], now, schema)
        conn.execute(_ISSUE_WRITES + enqueue_sql.removeprefix(b"WITH "),
                     [*sqlrules.issue_writes(otp, now), *enqueue_params])
    return outcome


def verify_otp(
    conn: Conn, schema: str, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int, now: float,
    uncertain: bool = False,
) -> OtpVerifyOutcome:
    """``OtpStore.verify_otp``. On a retry after an uncertain commit, a right code that the
    first try consumed (its ``consumed_at`` is this call's ``now``) answers VERIFIED again: the
    person who typed it must not be told ``invalid`` because a connection dropped."""
    _lock_recipient(conn, schema, recipient)
    if uncertain:
        row = conn.execute("SELECT code_hash FROM otps WHERE recipient = %s AND purpose = %s AND consumed_at = %s",
                           (recipient, purpose, now)).fetchone()
        if row is not None and hmac.compare_digest(bytes(row["code_hash"]), candidate_hash):
            return OtpVerifyOutcome.VERIFIED
    return sqlrules.verify_otp(PgTx(conn), recipient, purpose, candidate_hash, max_attempts=max_attempts, now=now)


def issue_batch(conn: Conn, schema: str, items: Sequence[NewMessage | OtpIssue], *, cooldown_seconds: float,
                max_per_hour: int, now: float, uncertain: bool) -> list[EnqueueResult]:
    """Every item in this transaction (:func:`otpagent.storage.batch_issue.issue_batch`); raises
    ``BatchRefused`` (the caller's transaction then rolls back) when a code is refused."""
    ops = _PgBatchOps(conn, schema, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour, now=now,
                      uncertain=uncertain)
    results = batch_issue.issue_batch(ops, items, now)
    if any(r.created for r in results):
        notify_enqueued(conn, schema)
    return results


class _PgBatchOps:
    def __init__(self, conn: Conn, schema: str, *, cooldown_seconds: float, max_per_hour: int, now: float,
                 uncertain: bool) -> None:
        self.conn, self.schema, self.now, self.uncertain = conn, schema, now, uncertain
        self.cooldown_seconds, self.max_per_hour = cooldown_seconds, max_per_hour

    def holder(self, key: str) -> tuple[str, str | None, float] | None:
        row = self.conn.execute("SELECT id, fingerprint, created_at FROM messages WHERE idempotency_key = %s",
                                (key,)).fetchone()
        return None if row is None else (row["id"], row["fingerprint"], row["created_at"])

    def enqueue(self, items: Sequence[NewMessage]) -> list[EnqueueResult]:
        return enqueue(self.conn, items, self.now, self.uncertain, self.schema)

    def issue(self, issue: OtpIssue) -> tuple[OtpIssueOutcome, float]:
        return issue_otp(self.conn, self.schema, issue.otp, issue.message, cooldown_seconds=self.cooldown_seconds,
                         max_per_hour=self.max_per_hour, now=self.now, uncertain=self.uncertain)
