"""``get_metrics()``: what the whole fleet did, from storage, and what this process holds.

Every figure but those under ``this_process`` is read from storage, which every worker of a
fleet shares, so any process (a worker, ``otpagent stats`` in a shell, a service replica)
reports the same numbers:

- ``queue_size``, ``oldest_due_age_seconds`` and ``database_stats``: the messages stored now;
- ``workers``: the live workers of the fleet (:mod:`otpagent.fleet`);
- ``last_24h``: message events (retries, fallbacks, failures, expiries...) and attempts of the
  last 24 hours, counted from the ``events`` table and the attempt rows;
- ``channels``: each channel's attempts over the same 24 hours, today's spend and its budget;
- ``fraud_guard``: the prefixes the fraud guard holds now.

``this_process`` holds this process's own counters: they start at zero in every process and
see only the work its own dispatcher did, so they answer "what is this worker doing", never
"how is the fleet doing".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otpagent.fleet import live_workers
from otpagent.protocols import STATS_WINDOW_SECONDS, AttemptTally, ChannelStats, total_attempts

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["collect_metrics", "utc_day"]

_SUCCEEDED = ("sent", "delivered", "read")
_FAILED = ("failed", "undelivered", "expired")
#: Message-level events of ``last_24h`` and the key each is shown under.
_MESSAGE_EVENTS = {"queued": "queued", "scheduled": "scheduled", "sent": "sent", "delivered": "delivered",
                   "undelivered": "undelivered", "failed": "failed", "expired": "expired", "cancelled": "cancelled",
                   "retrying": "retries", "fallback": "fallbacks"}


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def collect_metrics(agent: IntelligentOTPAgent) -> dict[str, Any]:
    now = agent.clock()
    housekeeping = agent.capabilities.housekeeping
    stats = housekeeping.stats(now)
    events = housekeeping.event_counts(now - STATS_WINDOW_SECONDS, now)
    by_status = dict(stats.by_status)
    succeeded = sum(by_status.get(s, 0) for s in _SUCCEEDED)
    failed = sum(by_status.get(s, 0) for s in _FAILED)
    finished = succeeded + failed
    # Spend per channel per UTC day, for the last week (the budget check reads today's).
    week_start = now - (now % 86400.0) - 6 * 86400.0
    costs_by_day = {ch: {day: round(cost, 6) for day, cost in sorted(days.items())}
                    for ch, days in housekeeping.costs_by_day(week_start).items()}
    today = utc_day(now)
    channels = {name: _channel(agent, name, stats.channels.get(name), costs_by_day.get(name, {}).get(today, 0.0), now)
                for name in agent.channels}
    workers = live_workers(agent.capabilities.shared_state, now)
    return {
        "queue_size": stats.queue_size,
        "oldest_due_age_seconds": stats.oldest_due_age_seconds,
        "workers": {"live": len(workers), "threads": sum(w.threads for w in workers),
                    "processes": [w.to_dict() for w in workers]},
        "database_stats": {
            "total_messages": stats.total,
            "delivered_messages": by_status.get("delivered", 0) + by_status.get("read", 0),
            "sent_messages": succeeded,
            "failed_messages": failed,
            "by_status": by_status,
            # Share of finished messages that reached a provider (sent) or the user (delivered).
            "success_rate": round(100.0 * succeeded / finished, 2) if finished else 0.0,
        },
        "last_24h": _last_24h(events, stats.channels),
        "channels": channels,
        "total_cost": round(sum(c["cost"] for c in channels.values()), 6),
        "cost_by_day": costs_by_day,
        "fraud_guard": _fraud_guard(agent, now),
        "this_process": _this_process(agent),
    }


def _fraud_guard(agent: IntelligentOTPAgent, now: float) -> dict[str, Any]:
    """The prefixes the fraud guard holds now (docs/fraud.md), fleet-wide."""
    guard = agent.fraud_guard
    if guard is None:
        return {"enabled": False, "held": {}}
    return {"enabled": True, "held": {prefix: {"until": hold.until, "since": hold.since, "reason": hold.reason}
                                      for prefix, hold in sorted(guard.held(now).items())}}


def _channel(agent: IntelligentOTPAgent, name: str, cs: ChannelStats | None, spent_today: float,
             now: float) -> dict[str, Any]:
    cfg = agent.channel_configs[name]
    cs = cs or ChannelStats()
    return {
        "kind": agent.channels[name].kind,
        "plugin": cfg.plugin,
        "enabled": cfg.enabled,
        "circuit": agent.breakers.state(name, now),
        "attempts": cs.attempts,
        "sent": cs.accepted,
        "delivered": cs.delivered,
        "failed": cs.transient + cs.permanent + cs.undelivered,
        "transient_failures": cs.transient,
        "permanent_failures": cs.permanent,
        "undelivered": cs.undelivered,
        "success_rate": round(100.0 * cs.success_rate, 2) if cs.success_rate is not None else None,
        "cost": round(cs.cost, 6),
        "p50_latency_ms": cs.p50_latency_ms,
        "p95_latency_ms": cs.p95_latency_ms,
        "daily_spend": round(spent_today, 6),
        "daily_budget": cfg.daily_budget,
    }


def _last_24h(events: Mapping[str, int], channels: Mapping[str, ChannelStats]) -> dict[str, Any]:
    # The channels' statistics cover the same window: their attempts need no second read.
    attempts = total_attempts(AttemptTally(accepted=c.accepted, transient=c.transient, permanent=c.permanent,
                                           delivered=c.delivered, undelivered=c.undelivered)
                              for c in channels.values())
    return {
        "window_seconds": STATS_WINDOW_SECONDS,
        "messages": {key: int(events.get(event, 0)) for event, key in _MESSAGE_EVENTS.items()},
        "attempts": {"total": attempts.attempts, "accepted": attempts.accepted, "transient": attempts.transient,
                     "permanent": attempts.permanent, "undelivered": attempts.undelivered,
                     "failed": attempts.failed,
                     "success_rate": round(100.0 * attempts.accepted / attempts.attempts, 2)
                     if attempts.attempts else None},
    }


def _this_process(agent: IntelligentOTPAgent) -> dict[str, Any]:
    dispatcher = agent.dispatcher
    counters = dict(dispatcher.counters)
    return {
        "worker_id": dispatcher.worker_id,
        "is_running": agent.is_running,
        "worker_threads": agent.config.dispatcher.workers,
        # Threads running those slots now: a few, more while a slow provider holds them.
        "threads_running": dispatcher.threads_running,
        "inflight": dispatcher.inflight,
        "outcomes_unwritten": dispatcher.outcomes_unwritten,
        # Plugin guard rails: threads still stuck in an abandoned channel call.
        "abandoned_threads": dispatcher.pool.abandoned if dispatcher.pool is not None else 0,
        "events_dropped": agent.bus.dropped,
        # What this process's dispatcher did since it started (see the module docstring).
        "counters": {"sent": counters["sent"], "failed": counters["failed"], "expired": counters["expired"],
                     "retries": counters["retried"], "fallbacks": counters["fallbacks"],
                     "channel_faults": counters["channel_faults"], "abandoned_calls": counters["abandoned_calls"]},
    }
