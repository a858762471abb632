"""What the dashboard draws: a snapshot (polled) and the last hour's history (on load).

Every figure comes from storage, so any replica of a fleet shows the same page, and each says
what it counts: *messages* (what was asked for) or *attempts* (each try on a channel), over
which window. The charts plot "the 60 seconds ending here" at every point: the history read
gives one point per minute for the last hour (:meth:`Housekeeping.history`, queue depth from
the workers' minute samples, :mod:`otpagent.fleet`), and each snapshot adds a live point for the
minute ending now (``event_counts`` and ``attempt_counts``), so the two join without a seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otpagent.fleet import queue_depth_samples
from otpagent.model import Message
from otpagent.protocols import AttemptTally, Housekeeping, StorageBackend, total_attempts
from otpagent.server.service import Service

__all__ = ["HOUR", "MINUTE", "collect_history", "collect_snapshot", "mask_recipient"]

MINUTE = 60.0
HOUR = 3600.0
_FINISHED_BADLY = ("failed", "expired")


def _figures(events: Mapping[str, int], attempts: AttemptTally) -> dict[str, int]:
    """One chart point's counts: messages finished (sent, or failed/expired) and attempts."""
    sent = int(events.get("sent", 0))
    failed = sum(int(events.get(t, 0)) for t in _FINISHED_BADLY)
    return {"sent": sent, "failed": failed, "finished": sent + failed,
            "attempts_accepted": attempts.accepted, "attempts_failed": attempts.transient + attempts.permanent}


def _window(housekeeping: Housekeeping, since: float, now: float) -> dict[str, int]:
    attempts = total_attempts(housekeeping.attempt_counts(since, now).values())
    return _figures(housekeeping.event_counts(since, now), attempts)


def collect_snapshot(service: Service, recent: int = 15) -> dict[str, Any]:
    agent = service.agent
    m = agent.get_metrics()
    now = agent.clock()
    db = m["database_stats"]
    channels = [{"name": name, **{k: c[k] for k in (
        "kind", "attempts", "sent", "delivered", "failed", "success_rate", "p50_latency_ms", "p95_latency_ms",
        "cost", "daily_spend", "daily_budget", "circuit")}} for name, c in m["channels"].items()]
    messages = [_message_row(agent.storage, msg) for msg in agent.storage.recent_messages(recent)]
    return {
        "at": now, "queue_size": m["queue_size"], "oldest_due_age_seconds": m["oldest_due_age_seconds"],
        "workers": {"live": m["workers"]["live"], "threads": m["workers"]["threads"]},
        "messages": {"stored": db["total_messages"], "succeeded": db["sent_messages"],
                     "delivered": db["delivered_messages"], "failed": db["failed_messages"],
                     "success_rate": db["success_rate"], "by_status": db["by_status"]},
        "last_24h": {"attempts": m["last_24h"]["attempts"], "retries": m["last_24h"]["messages"]["retries"],
                     "fallbacks": m["last_24h"]["messages"]["fallbacks"], "cost": m["total_cost"]},
        "last_minute": _window(agent.capabilities.housekeeping, now - MINUTE, now),
        "last_hour": _window(agent.capabilities.housekeeping, now - HOUR, now),
        "channels": channels, "recent": messages,
    }


def collect_history(service: Service, seconds: float = HOUR) -> dict[str, Any]:
    """The last ``seconds`` in one-minute points, each for the minute ending at its ``t``."""
    agent = service.agent
    now = agent.clock()
    since = now - seconds
    buckets = agent.capabilities.housekeeping.history(since, now, MINUTE)
    points = [{"t": b.start + MINUTE, **_figures(b.events, b.attempts)} for b in buckets]
    queue = [[at, depth] for at, depth in queue_depth_samples(agent.capabilities.shared_state, since)]
    return {"at": now, "since": since, "bucket_seconds": MINUTE, "points": points, "queue": queue,
            "totals": {k: sum(p[k] for p in points) for k in ("finished", "sent", "failed", "attempts_accepted",
                                                             "attempts_failed")}}


def _message_row(storage: StorageBackend, msg: Message) -> dict[str, Any]:
    attempts = storage.get_attempts(msg.id)
    return {
        "id": msg.id, "type": msg.message_type.value, "priority": msg.priority.name, "status": msg.status.value,
        "channel": msg.channel, "recipient": mask_recipient(msg.recipient), "updated_at": msg.updated_at,
        "last_error": msg.last_error or None,
        "attempts": [{"number": a.number, "channel": a.channel, "outcome": a.outcome.value,
                      "error_code": a.error_code, "latency_ms": round(a.latency_ms, 1)} for a in attempts],
    }


def mask_recipient(recipient: str) -> str:
    """Enough of a phone number or address to recognise it, not enough to use it."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}•••@{domain}"
    return f"{recipient[:4]}•••{recipient[-3:]}" if len(recipient) > 7 else "•••"
