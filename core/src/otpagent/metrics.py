"""``get_metrics()``: figures from storage (shared by every worker) plus this process's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent

__all__ = ["collect_metrics"]

_SUCCEEDED = ("sent", "delivered", "read")
_FAILED = ("failed", "undelivered", "expired")


def collect_metrics(agent: IntelligentOTPAgent) -> dict[str, Any]:
    now = agent.clock()
    stats = agent.capabilities.housekeeping.stats(now)
    by_status = dict(stats.by_status)
    succeeded = sum(by_status.get(s, 0) for s in _SUCCEEDED)
    failed = sum(by_status.get(s, 0) for s in _FAILED)
    finished = succeeded + failed
    channels: dict[str, Any] = {}
    for name, channel in agent.channels.items():
        cfg = agent.channel_configs[name]
        cs = stats.channels.get(name)
        channels[name] = {
            "kind": channel.kind,
            "plugin": cfg.plugin,
            "enabled": cfg.enabled,
            "circuit": agent.breakers.state(name, now),
            "attempts": cs.attempts if cs else 0,
            "sent": cs.accepted if cs else 0,
            "delivered": cs.delivered if cs else 0,
            "failed": (cs.transient + cs.permanent + cs.undelivered) if cs else 0,
            "transient_failures": cs.transient if cs else 0,
            "permanent_failures": cs.permanent if cs else 0,
            "success_rate": round(100.0 * cs.success_rate, 2) if cs and cs.success_rate is not None else None,
            "cost": round(cs.cost, 6) if cs else 0.0,
            "p50_latency_ms": cs.p50_latency_ms if cs else None,
            "p95_latency_ms": cs.p95_latency_ms if cs else None,
        }
    # Spend per channel per UTC day, for the last week (the budget check reads today's).
    week_start = now - (now % 86400.0) - 6 * 86400.0
    costs_by_day = {ch: {day: round(cost, 6) for day, cost in sorted(days.items())}
                    for ch, days in agent.capabilities.housekeeping.costs_by_day(week_start).items()}
    counters = dict(agent.dispatcher.counters)
    return {
        "queue_size": stats.queue_size,
        "is_running": agent.is_running,
        "oldest_due_age_seconds": stats.oldest_due_age_seconds,
        "database_stats": {
            "total_messages": stats.total,
            "delivered_messages": by_status.get("delivered", 0) + by_status.get("read", 0),
            "sent_messages": succeeded,
            "failed_messages": failed,
            "by_status": by_status,
            # Share of finished messages that reached a provider (sent) or the user (delivered).
            "success_rate": round(100.0 * succeeded / finished, 2) if finished else 0.0,
        },
        "runtime_metrics": {
            "total_sent": counters["sent"],
            "total_failed": counters["failed"],
            "total_expired": counters["expired"],
            "retries": counters["retried"],
            "fallbacks": counters["fallbacks"],
            # Plugin guard rails: channel sends that raised, returned garbage or overran (and
            # of those, calls abandoned), and threads still stuck in an abandoned call.
            "channel_faults": counters["channel_faults"],
            "abandoned_calls": counters["abandoned_calls"],
            "abandoned_threads": agent.dispatcher.pool.abandoned if agent.dispatcher.pool is not None else 0,
            "inflight": agent.dispatcher.inflight,
            "workers": agent.config.dispatcher.workers,
            "events_dropped": agent.bus.dropped,
        },
        "channels": channels,
        "total_cost": round(sum(c["cost"] for c in channels.values()), 6),
        "cost_by_day": costs_by_day,
    }
