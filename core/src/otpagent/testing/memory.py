"""``InMemoryStorage``: a complete storage backend in pure Python, registered as ``memory``.

It provides the required core and every capability (the webhook outbox and the work wake-up
included) and passes the whole contract suite, so it is both a way to test an application
without a database (``{"storage": {"backend": "memory"}}``) and the reference a backend author
reads to see what each method must do. Its store lives in one process and is gone when that
process ends. Thread-safe: every operation runs whole under the store's one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import attrs

from otpagent.model import CLAIMABLE_STATUSES, Attempt, Event, Message, Status
from otpagent.protocols import (
    FINISHED_STATUSES,
    IDEMPOTENCY_WINDOW_SECONDS,
    STATS_WINDOW_SECONDS,
    ActivityBucket,
    AttemptTally,
    BatchIssueResult,
    Capability,
    ChannelStats,
    EnqueueResult,
    IdempotencyConflict,
    MessageUpdate,
    MessageWrite,
    NewMessage,
    OtpIssue,
    OtpIssueOutcome,
    OtpRecord,
    OtpVerifyOutcome,
    PluginContext,
    ProviderEvent,
    ProviderEventOutcome,
    ProviderEventResult,
    StorageStats,
)
from otpagent.ratelimit import gcra, require_granted, take_all
from otpagent.settings import describes, setting, structure
from otpagent.storage import batch_issue
from otpagent.storage.rows import attempt_from_row, event_from_row, event_to_row, message_from_row, percentile
from otpagent.testing import memory_activity, memory_otp
from otpagent.testing.memory_outbox import InMemoryWebhookOutbox
from otpagent.testing.memory_store import MemoryStore, apply_update, prepare_message

__all__ = ["InMemoryStorage", "MemoryOpener", "create_memory_storage"]

_CLAIMABLE = frozenset(s.value for s in CLAIMABLE_STATUSES)
_FINISHED = frozenset(s.value for s in FINISHED_STATUSES)


@attrs.frozen
class MemorySettings:
    """``storage`` for the ``memory`` backend: no settings (in this process only, gone at exit)."""

    backend: str = setting("memory", choices=("memory",))


@describes(MemorySettings)
def create_memory_storage(settings: Mapping[str, Any], context: PluginContext) -> InMemoryStorage:
    """Factory registered as ``memory``: ``{"storage": {"backend": "memory"}}`` (no other keys)."""
    structure(MemorySettings, settings, path="storage")
    return InMemoryStorage()


@attrs.frozen
class MemoryOpener:
    """Opens another handle on the same in-memory store (in this process only)."""

    store: MemoryStore

    def __call__(self) -> InMemoryStorage:
        return InMemoryStorage(self.store)


class InMemoryStorage:
    """A :class:`~otpagent.protocols.StorageBackend` with every capability, in this process."""

    name = "memory"
    capabilities = frozenset(Capability)

    def __init__(self, store: MemoryStore | None = None) -> None:
        self._store = store or MemoryStore()
        self._outbox = InMemoryWebhookOutbox(self._store)
        self._closed = False
        #: Per claiming thread: the work generation its last claim saw (see ``wait_for_work``).
        self._claimed_at = threading.local()

    def opener(self) -> MemoryOpener:
        """A callable that opens another handle on this same store (what the contract suite's
        ``store_opener`` fixture returns for this backend)."""
        return MemoryOpener(self._store)

    def _tx(self) -> AbstractContextManager[MemoryStore]:
        """The store under its lock, for one whole operation."""
        if self._closed:
            raise RuntimeError("storage is closed")
        return self._store.transaction()

    # -- core ----------------------------------------------------------------------------------
    def enqueue_stream(self, chunks: Iterable[Sequence[NewMessage]], now: float) -> list[EnqueueResult]:
        """The simplest correct streamed enqueue: take the whole stream (a raise while taking it
        writes nothing), then ``enqueue`` it as one batch. A backend whose writes run in another
        process (PostgreSQL) writes each chunk as it comes, which is what makes it worth having."""
        return self.enqueue([item for chunk in chunks for item in chunk], now)

    def enqueue(self, items: Sequence[NewMessage], now: float) -> list[EnqueueResult]:
        with self._tx() as s:
            results: list[EnqueueResult] = []
            fresh: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
            expired_keys: list[str] = []
            in_batch: dict[str, NewMessage] = {}
            for index, item in enumerate(items):
                m, key = item.message, item.message.idempotency_key
                if key is not None and key in in_batch:
                    if in_batch[key].fingerprint != item.fingerprint:
                        raise IdempotencyConflict(key, index)
                    results.append(EnqueueResult(message_id=in_batch[key].message.id, created=False))
                    continue
                if key is not None:
                    in_batch[key] = item
                    holder = s.messages.get(s.by_idempotency_key.get(key, ""))
                    if holder is not None and holder["created_at"] >= now - IDEMPOTENCY_WINDOW_SECONDS:
                        if holder["fingerprint"] != item.fingerprint:
                            raise IdempotencyConflict(key, index)
                        results.append(EnqueueResult(message_id=holder["id"], created=False))
                        continue
                    if holder is not None:
                        expired_keys.append(key)  # the key expired: it moves to the new message
                fresh.append(prepare_message(m, item.fingerprint, now))
                results.append(EnqueueResult(message_id=m.id, created=True))
            for key in expired_keys:
                s.messages[s.by_idempotency_key.pop(key)]["idempotency_key"] = None
            for prepared in fresh:
                s.insert_message(prepared)
            return results

    def claim_due(self, worker_id: str, limit: int, lease_seconds: float, now: float, *,
                  reclaim: bool = True) -> list[Message]:
        if limit <= 0:
            return []
        with self._tx() as s:
            self._claimed_at.generation = s.work_generation
            due = [r for r in s.messages.values()
                   if (r["status"] in _CLAIMABLE and r["due_at"] <= now)
                   or (reclaim and r["status"] == "sending" and r["lease_expires_at"] is not None
                       and r["lease_expires_at"] <= now)]
            due.sort(key=lambda r: (-r["priority"], r["due_at"], r["seq"]))
            for r in due[:limit]:
                r.update(status=Status.SENDING.value, lease_owner=worker_id, lease_expires_at=now + lease_seconds,
                         updated_at=now)
            return [message_from_row(r) for r in due[:limit]]

    def renew_leases(self, worker_id: str, lease_seconds: float, now: float) -> int:
        with self._tx() as s:
            mine = [r for r in s.messages.values() if r["status"] == "sending" and r["lease_owner"] == worker_id]
            for r in mine:
                r["lease_expires_at"] = now + lease_seconds
            return len(mine)

    def update_message(self, update: MessageUpdate, now: float, *, attempt: Attempt | None = None,
                       events: Sequence[Event] = ()) -> bool:
        rows = [event_to_row(e) for e in events]
        with self._tx() as s:
            if attempt is not None:
                s.insert_attempt(attempt)
            row = s.messages.get(update.message_id)
            applied = row is not None and apply_update(row, update, now)
            if applied:
                s.insert_events(rows)
            return applied

    def update_messages(self, writes: Sequence[MessageWrite]) -> list[bool | Exception]:
        """One after the other: this store has no commit to share."""
        results: list[bool | Exception] = []
        for w in writes:
            try:
                results.append(self.update_message(w.update, w.now, attempt=w.attempt, events=w.events))
            except Exception as exc:  # that write alone is lost; the others are not
                results.append(exc)
        return results

    def get_message(self, message_id: str) -> Message | None:
        with self._tx() as s:
            return s.message(message_id)

    def get_attempts(self, message_id: str) -> list[Attempt]:
        with self._tx() as s:
            rows = sorted((a for a in s.attempts.values() if a["message_id"] == message_id),
                          key=lambda a: (a["number"], a["id"]))
            return [attempt_from_row(a) for a in rows]

    def get_events(self, message_id: str) -> list[Event]:
        with self._tx() as s:
            return [event_from_row(s.event_row(i)) for i, e in s.events.items() if e[0] == message_id]

    def recent_messages(self, limit: int) -> list[Message]:
        with self._tx() as s:
            rows = sorted(s.messages.values(), key=lambda r: (r["updated_at"], r["seq"]), reverse=True)[:limit]
            return [message_from_row(r) for r in rows]

    def find_by_provider_id(self, provider_message_id: str) -> Attempt | None:
        with self._tx() as s:
            row = s.latest_attempt(provider_message_id)
            return attempt_from_row(row) if row is not None else None

    def ping(self) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")

    def close(self) -> None:
        self._closed = True

    # -- shared state --------------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        with self._tx() as s:
            return s.state.get(key)

    def put_state(self, key: str, value: str, *, only_if_absent: bool = False) -> str:
        with self._tx() as s:
            if not (only_if_absent and key in s.state):
                s.state[key] = value
            return s.state[key]

    def update_state(self, key: str, update: Callable[[str | None], str]) -> str:
        with self._tx() as s:
            value = update(s.state.get(key))
            s.state[key] = value
            return value

    def states_with_prefix(self, prefix: str) -> dict[str, str]:
        with self._tx() as s:
            return {k: v for k, v in s.state.items() if k.startswith(prefix)}

    # -- rate limits ---------------------------------------------------------------------------
    def acquire(self, key: str, interval: float, burst: int, now: float, cost: int = 1,
                max_wait: float = 0.0) -> float:
        with self._tx() as s:
            new_tat, wait = gcra(s.rate_limits.get(key) or None, now, interval, burst, cost, max_wait)
            if wait <= max_wait:
                s.rate_limits[key] = new_tat
            return wait

    def acquire_all(self, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
        with self._tx() as s:
            return _acquire_all(s, buckets, now)

    # -- OTP store -----------------------------------------------------------------------------
    def issue_batch(self, items: Sequence[NewMessage | OtpIssue], *, cooldown_seconds: float, max_per_hour: int,
                    now: float) -> BatchIssueResult:
        with self._tx() as s:
            saved = s.snapshot()
            ops = _MemoryBatchOps(self, s, cooldown_seconds=cooldown_seconds, max_per_hour=max_per_hour, now=now)
            try:
                return BatchIssueResult(results=tuple(batch_issue.issue_batch(ops, items, now)))
            except batch_issue.BatchRefused as refused:
                s.restore(saved)
                return BatchIssueResult(refused=refused.refused)
            except BaseException:
                s.restore(saved)
                raise

    def issue_otp(self, otp: OtpRecord, message: NewMessage, *, cooldown_seconds: float, max_per_hour: int,
                  now: float, buckets: Sequence[tuple[str, float, int]] = ()) -> tuple[OtpIssueOutcome, float]:
        with self._tx() as s:
            require_granted(buckets, _acquire_all(s, buckets, now))  # before anything else: all or none
            return memory_otp.issue_otp(s, otp, message, cooldown_seconds=cooldown_seconds,
                                        max_per_hour=max_per_hour, now=now)

    def verify_otp(self, recipient: str, purpose: str, candidate_hash: bytes, *, max_attempts: int,
                   now: float, buckets: Sequence[tuple[str, float, int]] = ()) -> OtpVerifyOutcome:
        with self._tx() as s:
            require_granted(buckets, _acquire_all(s, buckets, now))
            return memory_otp.verify_otp(s, recipient, purpose, candidate_hash, max_attempts=max_attempts, now=now)

    def seal_legacy_secrets(self, seal: Callable[[str, str], str], now: float) -> int:
        with self._tx() as s:
            return memory_otp.seal_legacy_secrets(s, seal, now)

    def redact_expired_secrets(self, now: float) -> int:
        with self._tx() as s:
            return memory_otp.redact_expired_secrets(s, now)

    # -- provider events -----------------------------------------------------------------------
    def apply_provider_event(self, event: ProviderEvent, *, allowed_from: frozenset[Status | None],
                             update: MessageUpdate | None, events: Sequence[Event], now: float) -> ProviderEventResult:
        rows = [event_to_row(e) for e in events]  # serialise first: a failure then writes nothing
        with self._tx() as s:
            attempt = s.latest_attempt(event.provider_message_id)
            if attempt is None:
                return ProviderEventResult(outcome=ProviderEventOutcome.UNKNOWN)
            seen = (event.source, event.event_id)
            if seen in s.seen_events:
                return ProviderEventResult(outcome=ProviderEventOutcome.REPLAY)
            s.seen_events[seen] = now
            current = Status(attempt["delivery_status"]) if attempt["delivery_status"] else None
            if current not in allowed_from:
                return ProviderEventResult(outcome=ProviderEventOutcome.STALE)
            attempt.update(delivery_status=event.status.value, status_updated_at=now)
            row = s.messages.get(update.message_id) if update is not None else None
            updated = row is not None and update is not None and apply_update(row, update, now)
            if updated:
                s.insert_events(rows)
            return ProviderEventResult(outcome=ProviderEventOutcome.APPLIED, message_updated=updated)

    # -- housekeeping --------------------------------------------------------------------------
    def stats(self, now: float) -> StorageStats:
        since = now - STATS_WINDOW_SECONDS
        with self._tx() as s:
            by_status: dict[str, int] = {}
            for r in s.messages.values():
                by_status[r["status"]] = by_status.get(r["status"], 0) + 1
            due = [r["due_at"] for r in s.messages.values() if r["status"] in _CLAIMABLE and r["due_at"] <= now]
            recent = [a for a in s.attempts.values() if a["finished_at"] >= since]
        channels: dict[str, list[dict[str, Any]]] = {}
        for a in recent:
            channels.setdefault(a["channel"], []).append(a)
        return StorageStats(
            total=sum(by_status.values()),
            queue_size=sum(n for status, n in by_status.items() if status in _CLAIMABLE or status == "sending"),
            by_status=by_status, channels={name: _channel_stats(rows) for name, rows in channels.items()},
            oldest_due_age_seconds=max(0.0, now - min(due)) if due else None,
        )

    def event_counts(self, since: float, now: float) -> dict[str, int]:
        with self._tx() as s:
            return memory_activity.event_counts(s, since, now)

    def attempt_counts(self, since: float, now: float) -> dict[str, AttemptTally]:
        with self._tx() as s:
            return memory_activity.attempt_counts(s, since, now)

    def history(self, since: float, now: float, bucket_seconds: float) -> list[ActivityBucket]:
        with self._tx() as s:
            return memory_activity.history(s, since, now, bucket_seconds)

    def costs_by_day(self, since: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        with self._tx() as s:
            for a in s.attempts.values():
                if a["finished_at"] >= since:
                    day = datetime.fromtimestamp(a["finished_at"], UTC).strftime("%Y-%m-%d")
                    days = out.setdefault(a["channel"], {})
                    days[day] = days.get(day, 0.0) + a["cost"]
        return out

    def cleanup(self, older_than: float, now: float) -> Mapping[str, int]:
        with self._tx() as s:
            doomed = {i for i, r in s.messages.items() if r["status"] in _FINISHED and r["updated_at"] < older_than}
            attempts = [i for i, a in s.attempts.items() if a["message_id"] in doomed]
            events = [i for i, e in s.events.items()
                      if e[0] in doomed or (e[0] is None and e[2] < older_than)]
            otps = [i for i, o in s.otps.items() if o["expires_at"] < older_than]
            seen = [k for k, at in s.seen_events.items() if at < older_than]
            for attempt_id in attempts:
                del s.attempts[attempt_id]
            for event_id in events:
                del s.events[event_id]
            for otp_id in otps:
                del s.otps[otp_id]
            for seen_key in seen:
                del s.seen_events[seen_key]
            for i in doomed:
                key = s.messages.pop(i)["idempotency_key"]
                if key is not None:
                    s.by_idempotency_key.pop(key, None)
            for bucket in [k for k, tat in s.rate_limits.items() if tat < now - 3600.0]:
                del s.rate_limits[bucket]
            return {"delivery_reports": len(attempts), "events": len(events), "messages": len(doomed),
                    "otps": len(otps), "seen_events": len(seen)}

    # -- webhook outboxes and wake-ups ---------------------------------------------------------
    def webhook_outbox(self) -> InMemoryWebhookOutbox:
        return self._outbox

    def wait_for_work(self, timeout: float) -> None:
        """Return when a message has been enqueued through any handle since this thread's last
        claim began (since now, without one), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._store.work_arrived:
            seen = getattr(self._claimed_at, "generation", self._store.work_generation)
            self._claimed_at.generation = self._store.work_generation  # a second wait waits
            while self._store.work_generation == seen and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._store.work_arrived.wait(left)


def _channel_stats(rows: list[dict[str, Any]]) -> ChannelStats:
    latest = sorted(rows, key=lambda a: a["id"], reverse=True)[:1000]
    latencies = sorted((a["finished_at"] - a["started_at"]) * 1000.0 for a in latest)
    return ChannelStats(
        attempts=len(rows), accepted=sum(a["outcome"] == "accepted" for a in rows),
        transient=sum(a["outcome"] == "transient" for a in rows),
        permanent=sum(a["outcome"] == "permanent" for a in rows),
        delivered=sum(a["delivery_status"] in ("delivered", "read") for a in rows),
        undelivered=sum(a["delivery_status"] in ("undelivered", "failed") for a in rows),
        cost=sum(a["cost"] for a in rows), p50_latency_ms=percentile(latencies, 0.50),
        p95_latency_ms=percentile(latencies, 0.95),
    )


class _MemoryBatchOps:
    """:class:`~otpagent.storage.batch_issue.BatchOps` on the store, its lock held."""

    def __init__(self, storage: InMemoryStorage, store: MemoryStore, *, cooldown_seconds: float,
                 max_per_hour: int, now: float) -> None:
        self.storage, self.store, self.now = storage, store, now
        self.cooldown_seconds, self.max_per_hour = cooldown_seconds, max_per_hour

    def holder(self, key: str) -> tuple[str, str | None, float] | None:
        row = self.store.messages.get(self.store.by_idempotency_key.get(key, ""))
        return None if row is None else (row["id"], row["fingerprint"], row["created_at"])

    def enqueue(self, items: Sequence[NewMessage]) -> list[EnqueueResult]:
        return self.storage.enqueue(items, self.now)  # the store's lock is re-entrant

    def issue(self, issue: OtpIssue) -> tuple[OtpIssueOutcome, float]:
        return memory_otp.issue_otp(self.store, issue.otp, issue.message, cooldown_seconds=self.cooldown_seconds,
                                    max_per_hour=self.max_per_hour, now=self.now)


def _acquire_all(s: MemoryStore, buckets: Sequence[tuple[str, float, int]], now: float) -> list[float]:
    """``acquire_all`` on the state the caller's transaction holds (the OTP calls' ``buckets=`` too)."""
    waits, granted = take_all({key: s.rate_limits.get(key) for key, _, _ in buckets}, buckets, now)
    s.rate_limits.update(granted)
    return waits
