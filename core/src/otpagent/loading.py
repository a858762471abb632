"""Loading a JSON file of messages: the whole file in one transaction, and a rerun adds nothing.

Every row is validated first (every error listed with its index). Each row is then given an
idempotency key derived from the file (``load:<load id>:<row>``; the load id is a digest of the
file's bytes unless the caller names one), unless it carries a key of its own, and the whole
file goes to the store at once: plain messages queued and codes issued in one transaction
(``OtpStore.issue_batch``). A crash, a bad row or a code the resend limits refuse leaves nothing
of the file queued; running the same file again answers with the messages the first run queued
and sends no second code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from otpagent.errors import FieldError, InvalidRequest, RateLimited
from otpagent.intake import load_json_requests, to_new_message
from otpagent.model import MessageRequest, MessageType
from otpagent.protocols import EnqueueResult, IdempotencyConflict, NewMessage, OtpIssue

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["LoadResult", "load_file"]


@attrs.frozen(kw_only=True)
class LoadResult:
    """What a load did: the message id of every row (in file order), and how many are new."""

    load_id: str
    message_ids: tuple[str, ...]
    created: int

    @property
    def already_queued(self) -> int:
        """Rows an earlier run (or the rows' own idempotency keys) had queued already."""
        return len(self.message_ids) - self.created


def load_file(agent: IntelligentOTPAgent, path: str | os.PathLike[str], load_id: str | None = None) -> LoadResult:
    """Queue every row of the file at ``path``, all or nothing (see the module docstring)."""
    file = Path(path)
    requests = load_json_requests(file)
    if load_id is None:
        try:
            load_id = hashlib.sha256(file.read_bytes()).hexdigest()[:24]
        except OSError as exc:  # read once already: only a race with a deletion gets here
            raise InvalidRequest.single("file", f"cannot read {str(file)!r}: {exc}") from None
    keyed = [r if r.idempotency_key else attrs.evolve(r, idempotency_key=f"load:{load_id}:{i}")
             for i, r in enumerate(requests)]
    items = _items(agent, keyed)
    try:
        results = _store(agent, items)
    except IdempotencyConflict as exc:
        raise InvalidRequest.single("idempotency_key", str(exc), exc.index) from None
    created = [i for i, r in zip(items, results, strict=True) if r.created]
    agent.announce_queued([i.message.message if isinstance(i, OtpIssue) else i.message for i in created])
    return LoadResult(load_id=load_id, message_ids=tuple(r.message_id for r in results), created=len(created))


def _items(agent: IntelligentOTPAgent, requests: Sequence[MessageRequest]) -> list[NewMessage | OtpIssue]:
    """Each row ready for the store, every row's errors collected before anything is written."""
    now = agent.clock()
    items: list[NewMessage | OtpIssue] = []
    errors: list[FieldError] = []
    for index, request in enumerate(requests):
        try:
            if request.message_type is MessageType.OTP:
                items.append(agent.prepare_otp(request, now=now, purpose=str(request.metadata.get("purpose", "login"))))
            else:
                item = to_new_message(request, now=now)
                row_errors = agent.routability(item, index)
                if row_errors:
                    raise InvalidRequest(row_errors)
                items.append(item)
        except InvalidRequest as exc:
            errors.extend(e if e.index is not None else attrs.evolve(e, index=index) for e in exc.errors)
    if errors:
        raise InvalidRequest(errors)
    return items


def _store(agent: IntelligentOTPAgent, items: Sequence[NewMessage | OtpIssue]) -> list[EnqueueResult]:
    if not any(isinstance(i, OtpIssue) for i in items):
        return agent.storage.enqueue([i for i in items if isinstance(i, NewMessage)], agent.clock())
    policy = agent.otp_policy()
    cfg = agent.config.otp
    outcome = policy.store.issue_batch(items, cooldown_seconds=cfg.resend_cooldown_seconds,
                                       max_per_hour=cfg.max_per_hour, now=agent.clock())
    if outcome.refused:
        rows = ", ".join(f"[{i}] {why.value.replace('_', ' ')}" for i, why, _ in outcome.refused)
        raise RateLimited(f"the resend limits refused codes in rows {rows}; nothing was queued",
                          max(wait for _, _, wait in outcome.refused))
    return list(outcome.results)
