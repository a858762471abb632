"""Readable tables of delivery reports and metrics for the terminal (rich)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from otpagent.extras import require
from otpagent.model import DeliveryReport

require("cli", "otpagent's terminal tables")  # before rich: say which extra to install, not ImportError

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

__all__ = ["print_metrics", "print_report", "reports_table"]

_STATUS_STYLE = {"sent": "green", "delivered": "bold green", "read": "bold green", "failed": "red",
                 "undelivered": "red", "expired": "yellow", "cancelled": "dim", "scheduled": "cyan",
                 "queued": "cyan", "retrying": "yellow", "sending": "cyan"}


def reports_table(reports: Iterable[DeliveryReport], title: str = "Delivery reports") -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("message", "type", "priority", "recipient", "status", "channel", "attempts", "route", "note"):
        table.add_column(column, overflow="fold")
    for r in reports:
        style = _STATUS_STYLE.get(r.status.value, "")
        trail = " → ".join(
            f"{a.channel}:{a.outcome.value}" + (f"({a.error_code})" if a.error_code else "") for a in r.attempt_log
        )
        table.add_row(r.message_id[-10:], r.message_type.value, r.priority.name, r.recipient,
                      f"[{style}]{r.status.value}[/]", r.channel or "-", str(r.attempts), trail or "-",
                      (r.last_error or "")[:60])
    return table


def print_report(report: DeliveryReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(reports_table([report], title=f"Message {report.message_id}"))
    console.print(f"body: {report.body}")
    for event in report.history:
        console.print(f"  {event.type:<10} {dict(event.data)}")


def channels_table(channels: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="Channels")
    for column in ("channel", "kind", "circuit", "attempts", "sent", "failed", "success %", "p50 ms", "p95 ms", "cost"):
        table.add_column(column, justify="right" if column not in ("channel", "kind", "circuit") else "left")
    for name, c in channels.items():
        def fmt(v: Any, digits: int = 2) -> str:
            return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))
        table.add_row(name, c["kind"], c["circuit"], str(c["attempts"]), str(c["sent"]), str(c["failed"]),
                      fmt(c["success_rate"], 1), fmt(c["p50_latency_ms"]), fmt(c["p95_latency_ms"]),
                      fmt(c["cost"], 4))
    return table


def print_metrics(metrics: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    db = metrics["database_stats"]
    rt = metrics["runtime_metrics"]
    console.print(
        f"queue size [bold]{metrics['queue_size']}[/]  ·  messages {db['total_messages']}  ·  "
        f"success rate [bold]{db['success_rate']:.1f}%[/]  ·  by status {db['by_status']}  ·  "
        f"retries {rt['retries']}  ·  fallbacks {rt['fallbacks']}  ·  total cost {metrics['total_cost']:.4f}"
    )
    console.print(channels_table(metrics["channels"]))
