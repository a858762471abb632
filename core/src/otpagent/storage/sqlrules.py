"""The rules every SQL backend applies inside its transactions, written once.

OTP issuing and verification, the conditional message update, the GCRA bucket, provider events
and lease renewal are policy, not plumbing: SQLite and PostgreSQL must behave the same to the
letter, so both run these functions and statements (the shared reads and statistics are in
:mod:`otpagent.storage.sqlreads`). The SQL uses ``?`` placeholders and syntax both dialects accept (``INSERT ... AS``,
``ON CONFLICT``); a backend passes a :class:`Tx` that adapts placeholders and runs statements
on its open transaction, holding whatever lock makes the read-modify-write atomic.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from otpagent import jsontext
from otpagent.model import CLAIMABLE_STATUSES, Event, Status
from otpagent.otp_seal import SEALED_PREFIX
from otpagent.protocols import (
    FINISHED_STATUSES,
    LEGACY_OTP_KEY_STATE,
    MessageUpdate,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
    ProviderEvent,
    ProviderEventOutcome,
    ProviderEventResult,
)
from otpagent.storage.rows import Row, event_to_row

__all__ = [
    "CLAIMABLE_SQL", "FINISHED_SQL", "INSERT_EVENT", "INSERT_OTP", "INVALIDATE_OTPS", "RENEW_LEASES", "Row", "Tx",
    "apply_provider_event", "insert_event", "issue_decision", "issue_otp", "issue_writes", "message_update",
    "message_update_statement", "seal_legacy_secrets", "verify_otp",
]

#: The claimable statuses as SQL literals, exactly as in both backends' ``messages_ready``
#: partial index: literals (not parameters) let the planner prove a query matches the index.
CLAIMABLE_SQL = "'queued', 'scheduled', 'retrying'"
assert {s.strip("' ") for s in CLAIMABLE_SQL.split(",")} == {s.value for s in CLAIMABLE_STATUSES}
#: The statuses ``cleanup`` may delete (the queue is done with them), as SQL literals.
FINISHED_SQL = ", ".join(f"'{s.value}'" for s in sorted(FINISHED_STATUSES))
#: A live worker's heartbeat: extend every lease it holds (parameters: new expiry, worker id).
RENEW_LEASES = "UPDATE messages SET lease_expires_at = ? WHERE status = 'sending' AND lease_owner = ?"
INSERT_EVENT = "INSERT INTO events (message_id, type, at, data) VALUES (?, ?, ?, ?)"


class Tx(Protocol):
    """Statements on an open transaction, with ``?`` placeholders."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row, or None."""

    def all(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        """Every row."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""


def issue_otp(tx: Tx, otp: OtpRecord, *, cooldown_seconds: float, max_per_hour: int,
              now: float) -> tuple[OtpIssueOutcome, float]:
    """Enforce the resend cooldown and the hourly cap; on success invalidate the recipient's
    active codes for the purpose and store the new one. The caller enqueues the message in the
    same transaction when the outcome is ISSUED.
    """
    outcome = issue_decision(tx, otp, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour, now=now)
    if outcome[0] is OtpIssueOutcome.ISSUED:
        writes = issue_writes(otp, now)
        tx.run(INVALIDATE_OTPS, writes[:3])
        tx.run(INSERT_OTP, writes[3:])
    return outcome


#: The writes of an issue: the recipient's active codes for the purpose invalidated, the new one
#: stored (parameters: :func:`issue_writes`, the first three for the first statement).
INVALIDATE_OTPS = ("UPDATE otps SET invalidated_at = ? WHERE recipient = ? AND purpose = ? "
                   "AND consumed_at IS NULL AND invalidated_at IS NULL")
INSERT_OTP = ("INSERT INTO otps (id, recipient, purpose, code_hash, created_at, expires_at, message_id) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)")


def issue_writes(otp: OtpRecord, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`INVALIDATE_OTPS` then :data:`INSERT_OTP`."""
    return (now, otp.recipient, otp.purpose,
            otp.id, otp.recipient, otp.purpose, otp.code_hash, otp.created_at, otp.expires_at, otp.message_id)


def issue_decision(tx: Tx, otp: OtpRecord, *, cooldown_seconds: float, max_per_hour: int,
                   now: float) -> tuple[OtpIssueOutcome, float]:
    """Whether ``otp`` may be issued now under the resend cooldown and the hourly cap (a read:
    the caller holds the recipient's lock, and writes when the outcome is ISSUED)."""
    recent = tx.all("SELECT created_at FROM otps WHERE recipient = ? AND created_at > ? ORDER BY created_at",
                    (otp.recipient, now - 3600.0))
    if recent and now - recent[-1]["created_at"] < cooldown_seconds:
        return OtpIssueOutcome.COOLDOWN, recent[-1]["created_at"] + cooldown_seconds - now
    if len(recent) >= max_per_hour:
        return OtpIssueOutcome.HOURLY_LIMIT, recent[-max_per_hour]["created_at"] + 3600.0 - now
    return OtpIssueOutcome.ISSUED, 0.0


def verify_otp(tx: Tx, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int,
               now: float) -> OtpVerifyOutcome:
    """The verification rules of ``OtpStore.verify_otp`` (see its docstring): wrong guesses
    count against the live code, never against the recipient."""
    row = tx.one("SELECT id, code_hash, expires_at, failures FROM otps WHERE recipient = ? AND purpose = ? "
                 "AND consumed_at IS NULL AND invalidated_at IS NULL ORDER BY created_at DESC LIMIT 1",
                 (recipient, purpose))
    stored = bytes(row["code_hash"]) if row is not None else b"\0" * len(candidate_hash)
    # Compare even when there is no code, so timing does not tell whether one exists.
    matches = hmac.compare_digest(stored, candidate_hash)
    if row is None or row["failures"] >= max_attempts:
        return OtpVerifyOutcome.NO_LIVE_CODE
    live = row["expires_at"] > now
    if matches:
        if not live:
            return OtpVerifyOutcome.EXPIRED
        tx.run("UPDATE otps SET consumed_at = ? WHERE id = ?", (now, row["id"]))
        return OtpVerifyOutcome.VERIFIED
    if not live:
        return OtpVerifyOutcome.NO_LIVE_CODE
    failures = row["failures"] + 1
    if failures >= max_attempts:
        tx.run("UPDATE otps SET failures = ?, invalidated_at = ? WHERE id = ?", (failures, now, row["id"]))
        return OtpVerifyOutcome.TOO_MANY_ATTEMPTS
    tx.run("UPDATE otps SET failures = ? WHERE id = ?", (failures, row["id"]))
    return OtpVerifyOutcome.INVALID


def seal_legacy_secrets(tx: Tx, seal: Callable[[str, str], str], now: float) -> int:
    """The rules of ``OtpStore.seal_legacy_secrets``: seal (or, once expired, clear) every
    message secret not sealed yet, and delete the legacy OTP server key from shared state."""
    changed = 0
    rows = tx.all(f"SELECT id, secret, expires_at FROM messages WHERE secret IS NOT NULL "
                  f"AND substr(secret, 1, {len(SEALED_PREFIX)}) <> ?", (SEALED_PREFIX,))
    for row in rows:
        if row["expires_at"] is not None and row["expires_at"] < now:
            changed += tx.run("UPDATE messages SET secret = NULL WHERE id = ?", (row["id"],))
        else:
            changed += tx.run("UPDATE messages SET secret = ? WHERE id = ?", (seal(row["id"], row["secret"]),
                                                                              row["id"]))
    changed += tx.run("DELETE FROM state WHERE key = ?", (LEGACY_OTP_KEY_STATE,))
    return changed


def message_update(tx: Tx, u: MessageUpdate, now: float) -> bool:
    """Apply a conditional :class:`MessageUpdate`; True when its conditions held."""
    statement = message_update_statement(u, now)
    return statement is not None and tx.run(*statement) == 1


def message_update_statement(u: MessageUpdate, now: float) -> tuple[str, list[Any]] | None:
    """The conditional ``UPDATE messages`` of ``u`` with its parameters (``?`` placeholders),
    or None when its conditions cannot hold (no expected status at all).
    """
    if u.expected_statuses is not None and not u.expected_statuses:
        return None
    sets, set_params = _update_sets(u, now)
    where, where_params = _update_conditions(u)
    return f"UPDATE messages SET {', '.join(sets)} WHERE {' AND '.join(where)}", [*set_params, *where_params]


def _update_sets(u: MessageUpdate, now: float) -> tuple[list[str], list[Any]]:
    sets = ["status = ?", "updated_at = ?"]
    params: list[Any] = [u.status.value, now]
    for column, value in (
        ("due_at", u.due_at), ("route_index", u.route_index), ("channel_attempts", u.channel_attempts),
        ("attempt_count", u.attempt_count), ("channel", u.channel),
        ("provider_message_id", u.provider_message_id), ("last_error", u.last_error),
        ("route", jsontext.dumps(list(u.route)) if u.route is not None else None),
    ):
        if value is not None:
            sets.append(f"{column} = ?")
            params.append(value)
    if u.add_cost:
        sets.append("cost = cost + ?")
        params.append(u.add_cost)
    if u.clear_secret:
        sets.append("secret = NULL")
    if not u.keep_lease:
        sets.append("lease_owner = NULL, lease_expires_at = NULL")
    return sets, params


def _update_conditions(u: MessageUpdate) -> tuple[list[str], list[Any]]:
    where = ["id = ?"]
    params: list[Any] = [u.message_id]
    if u.expected_statuses is not None:
        where.append(f"status IN ({', '.join('?' * len(u.expected_statuses))})")
        params.extend(s.value for s in sorted(u.expected_statuses))
    for column, value in (("lease_owner", u.expected_owner),
                          ("provider_message_id", u.expected_provider_message_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


def insert_event(tx: Tx, event: Event) -> None:
    tx.run(INSERT_EVENT, event_to_row(event))


def apply_provider_event(tx: Tx, event: ProviderEvent, *, allowed_from: frozenset[Status | None],
                         update: MessageUpdate | None, events: Sequence[Event], now: float, lock: str = "",
                         uncertain: bool = False) -> ProviderEventResult:
    """The rules of ``ProviderEvents.apply_provider_event``, run inside the caller's transaction
    (which must roll back whole when this raises, so the event id is not remembered).

    ``lock`` is appended to the attempt's read (PostgreSQL: ``" FOR UPDATE"``; SQLite holds the
    write lock). ``uncertain``: an earlier try may have committed (see :func:`_committed_before`).
    """
    attempt = tx.one("SELECT id, delivery_status FROM delivery_reports WHERE provider_message_id = ? "
                     f"ORDER BY id DESC LIMIT 1{lock}", (event.provider_message_id,))
    if attempt is None:
        return ProviderEventResult(outcome=ProviderEventOutcome.UNKNOWN)
    if uncertain and (earlier := _committed_before(tx, event, update, attempt["id"], now)) is not None:
        return earlier
    if tx.run("INSERT INTO seen_events (source, event_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
              (event.source, event.event_id, now)) == 0:
        return ProviderEventResult(outcome=ProviderEventOutcome.REPLAY)
    current = Status(attempt["delivery_status"]) if attempt["delivery_status"] else None
    if current not in allowed_from:
        return ProviderEventResult(outcome=ProviderEventOutcome.STALE)
    tx.run("UPDATE delivery_reports SET delivery_status = ?, status_updated_at = ? WHERE id = ?",
           (event.status.value, now, attempt["id"]))
    updated = update is not None and message_update(tx, update, now)
    if updated:
        for e in events:
            insert_event(tx, e)
    return ProviderEventResult(outcome=ProviderEventOutcome.APPLIED, message_updated=updated)


def _committed_before(tx: Tx, event: ProviderEvent, update: MessageUpdate | None, attempt_id: int,
                      now: float) -> ProviderEventResult | None:
    """What the first try did, when its commit went through after all (it stamped the event
    id, the attempt and the message with ``now``); None when it did not commit.
    """
    seen = tx.one("SELECT seen_at FROM seen_events WHERE source = ? AND event_id = ?", (event.source, event.event_id))
    if seen is None or seen["seen_at"] != now:
        return None
    moved = tx.one("SELECT 1 AS moved FROM delivery_reports WHERE id = ? AND delivery_status = ? "
                   "AND status_updated_at = ?", (attempt_id, event.status.value, now))
    if moved is None:
        return ProviderEventResult(outcome=ProviderEventOutcome.STALE)
    updated = update is not None and tx.one(
        "SELECT 1 AS updated FROM messages WHERE id = ? AND status = ? AND updated_at = ?",
        (update.message_id, update.status.value, now)) is not None
    return ProviderEventResult(outcome=ProviderEventOutcome.APPLIED, message_updated=updated)
