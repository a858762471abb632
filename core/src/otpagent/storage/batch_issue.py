"""Issuing codes and queueing messages of one load together: all of it, or none of it.

``OtpStore.issue_batch`` is what ``load_messages_from_json`` and ``otpagent load`` use: a file
is one transaction, so a crash, a bad row or a code the resend limits refuse leaves nothing of
the file queued, and a rerun of the same file (each row carrying an idempotency key derived
from the file) queues nothing twice: a row already queued under its key answers with its
message id, and issues no second code.

The algorithm is written once here; each backend runs it inside one of its transactions,
through :class:`BatchOps` bound to that transaction, and undoes the transaction when
:class:`BatchRefused` comes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from otpagent.protocols import (
    IDEMPOTENCY_WINDOW_SECONDS,
    EnqueueResult,
    IdempotencyConflict,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
)

__all__ = ["BatchOps", "BatchRefused", "issue_batch"]


class BatchOps(Protocol):
    """What the algorithm needs of one open transaction."""

    def holder(self, key: str) -> tuple[str, str | None, float] | None:
        """``(message id, fingerprint, created_at)`` of the message holding an idempotency key."""

    def enqueue(self, items: Sequence[NewMessage]) -> list[EnqueueResult]:
        """``StorageBackend.enqueue``'s rules, inside this transaction."""

    def issue(self, issue: OtpIssue) -> tuple[OtpIssueOutcome, float]:
        """``OtpStore.issue_otp``'s rules, inside this transaction (the message is queued when
        the code is issued)."""


class BatchRefused(Exception):
    """Some codes were refused: the transaction must be undone (``refused`` says which)."""

    def __init__(self, refused: Sequence[tuple[int, OtpIssueOutcome, float]]) -> None:
        self.refused = tuple(refused)
        super().__init__(f"{len(self.refused)} code(s) refused by the resend limits")


def issue_batch(ops: BatchOps, items: Sequence[NewMessage | OtpIssue], now: float) -> list[EnqueueResult]:
    """Queue every plain message and issue every code, in order; raise :class:`BatchRefused`
    (after looking at every item, so all refusals are reported) when any code is refused, and
    :class:`IdempotencyConflict` for a key reused with another request."""
    results: list[EnqueueResult] = []
    refused: list[tuple[int, OtpIssueOutcome, float]] = []
    for index, item in enumerate(items):
        if isinstance(item, NewMessage):
            try:
                results.extend(ops.enqueue([item]))
            except IdempotencyConflict as exc:
                raise IdempotencyConflict(exc.key, index) from None
            continue
        already = _already_queued(ops, item, index, now)
        if already is not None:
            results.append(already)
            continue
        outcome, wait = ops.issue(item)
        if outcome is OtpIssueOutcome.ISSUED:
            results.append(EnqueueResult(message_id=item.message.message.id, created=True))
        else:
            refused.append((index, outcome, wait))
    if refused:
        raise BatchRefused(refused)
    return results


def _already_queued(ops: BatchOps, item: OtpIssue, index: int, now: float) -> EnqueueResult | None:
    key = item.message.message.idempotency_key
    holder = ops.holder(key) if key is not None else None
    if key is None or holder is None or holder[2] < now - IDEMPOTENCY_WINDOW_SECONDS:
        return None
    if holder[1] != item.message.fingerprint:
        raise IdempotencyConflict(key, index)
    return EnqueueResult(message_id=holder[0], created=False)
