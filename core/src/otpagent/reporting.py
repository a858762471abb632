"""Readable delivery reports and metrics for the terminal (rich), at 80 columns and wider.

Every figure says what it counts: *messages* (what a user asked to send) or *attempts* (each
try on a channel; one message may take several), and over which window; what only this
process knows is labelled so. Columns that matter never wrap mid-value: long free text
(routes, errors) goes on lines of its own instead of into a narrow cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from otpagent.extras import require
from otpagent.model import DeliveryReport

require("cli", "otpagent's terminal tables")  # before rich: say which extra to install, not ImportError

from rich import box  # noqa: E402
from rich.console import Console, ConsoleOptions, RenderResult  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

__all__ = ["ReportsTable", "channels_table", "print_metrics", "print_report", "reports_table"]

_STATUS_STYLE = {"sent": "green", "delivered": "bold green", "read": "bold green", "failed": "red",
                 "undelivered": "red", "expired": "yellow", "cancelled": "dim", "scheduled": "cyan",
                 "queued": "cyan", "retrying": "yellow", "sending": "cyan"}


def _status(value: str) -> str:
    return f"[{_STATUS_STYLE.get(value, '')}]{value}[/]" if value in _STATUS_STYLE else escape(value)


def _n(value: Any, digits: int = 0) -> str:
    """A figure for a cell: ``-`` for none, thousands separated."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(title: str | None = None) -> Table:
    # No vertical rules: at 80 columns every character goes to the figures.
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")


def reports_table(reports: Iterable[DeliveryReport], title: str = "Delivery reports") -> ReportsTable:
    """One line per message; its attempts in a column when the console is wide, else each
    message's attempts on a line of its own under the table (never folded mid-word)."""
    return ReportsTable(list(reports), title)


class ReportsTable:
    """A rich renderable that lays the reports out for the width it is given."""

    #: Below this width the attempts leave the table for lines of their own.
    WIDE = 110

    def __init__(self, reports: list[DeliveryReport], title: str) -> None:
        self.reports = reports
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.max_width >= self.WIDE
        table = _table(self.title)
        table.padding = (0, 1)
        table.collapse_padding = True
        for column in ("message", "type", "priority", "status", "channel"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        table.add_column("tries", justify="right", no_wrap=True)
        if wide:
            table.add_column("attempts (channel:outcome)", overflow="fold", ratio=1)
        for r in self.reports:
            cells = [r.message_id[-10:], r.message_type.value, r.priority.name, _status(r.status.value),
                     escape(r.channel or "-"), str(r.attempts)]
            table.add_row(*cells, *([escape(_trail(r))] if wide else []))
        yield table
        if not wide:
            yield "[bold]Attempts[/] (channel:outcome)"
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for r in self.reports:
                grid.add_row(r.message_id[-10:], escape(_trail(r)))
            yield grid


def _trail(report: DeliveryReport) -> str:
    return " → ".join(f"{a.channel}:{a.outcome.value}" + (f"({a.error_code})" if a.error_code else "")
                      for a in report.attempt_log) or "-"


def print_report(report: DeliveryReport, console: Console | None = None) -> None:
    """One message: its fields as lines, then a table of its attempts, then its history."""
    console = console or Console()
    console.print(f"[bold]Message {escape(report.message_id)}[/]")
    fields = [
        ("status", _status(report.status.value)),
        ("type", f"{report.message_type.value}, priority {report.priority.name}"),
        ("recipient", escape(report.recipient)),
        ("channel", escape(report.channel or "-")),
        ("route", escape(" → ".join(report.route) or "-")),
        ("cost", f"{report.cost:.4f}"),
        ("created", f"{report.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("updated", f"{report.updated_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    if report.scheduled_for is not None:
        fields.append(("scheduled", f"{report.scheduled_for:%Y-%m-%d %H:%M:%S} UTC"))
    if report.last_error:
        fields.append(("last error", escape(report.last_error)))
    fields.append(("body", escape(report.body)))
    for label, value in fields:
        console.print(f"  {label:<10} {value}", overflow="fold")
    if report.attempt_log:
        table = _table("Attempts")
        for column, justify in (("#", "right"), ("channel", "left"), ("outcome", "left"), ("error", "left"),
                                ("ms", "right"), ("delivery", "left")):
            table.add_column(column, justify=justify, no_wrap=column != "error",  # type: ignore[arg-type]
                             overflow="fold", ratio=1 if column == "error" else None)
        for a in report.attempt_log:
            error = " ".join(x for x in (f"[{a.error_code}]" if a.error_code else "", a.error_message or "") if x)
            table.add_row(str(a.number), escape(a.channel), a.outcome.value, escape(error or "-"),
                          f"{a.latency_ms:,.0f}", a.delivery_status.value if a.delivery_status else "-")
        console.print(table)
    if report.history:
        history = Table.grid(padding=(0, 1))
        history.add_column(no_wrap=True)
        history.add_column(no_wrap=True)
        history.add_column(overflow="fold")
        for event in report.history:
            at = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S.%f")[:12]
            detail = " ".join(f"{k}={v}" for k, v in event.data.items() if v is not None)
            history.add_row(at, event.type, escape(detail))
        console.print("[bold]History[/] (UTC)")
        console.print(history)


def channels_table(channels: Mapping[str, Mapping[str, Any]], title: str = "Channels · attempts, last 24 h") -> Table:
    """Per channel: attempts over the stats window, latency, cost, today's spend (and budget).

    Fits 80 columns: one space between columns, and only the channel's name may shrink.
    """
    table = _table(title)
    table.padding = (0, 1)
    table.collapse_padding = True
    table.add_column("channel", no_wrap=True, overflow="ellipsis", min_width=8, max_width=16)
    table.add_column("circuit", no_wrap=True)
    for column in ("tries", "sent", "failed", "ok %", "p95 ms", "cost", "today"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, c in channels.items():
        circuit = c["circuit"]
        budget = c.get("daily_budget")
        today = f"{c.get('daily_spend', 0.0):.2f}" + (f"/{budget:g}" if budget is not None else "")
        table.add_row(escape(name), f"[red]{circuit}[/]" if circuit == "open" else circuit, _n(c["attempts"]),
                      _n(c["sent"]), _n(c["failed"]), _n(c["success_rate"], 1), _n(c["p95_latency_ms"]),
                      f"{c['cost']:.4f}", today)
    return table


def print_metrics(metrics: Mapping[str, Any], console: Console | None = None) -> None:
    """The figures of ``get_metrics()``: the fleet's from storage, then this process's own."""
    console = console or Console()
    db = metrics["database_stats"]
    day = metrics["last_24h"]
    msgs, attempts = day["messages"], day["attempts"]
    workers = metrics["workers"]
    oldest = metrics.get("oldest_due_age_seconds")
    accepted = "-" if attempts["success_rate"] is None else f"{attempts['success_rate']:.1f}%"
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for label, value in (
        ("queue", f"{_n(metrics['queue_size'])} waiting or in flight"
                  + (f" · oldest due for {oldest:,.0f} s" if oldest is not None else "")),
        ("workers", f"{workers['live']} live ({workers['threads']} send slots), fleet-wide"),
        ("messages", f"{_n(db['total_messages'])} stored: {_n(db['sent_messages'])} sent or delivered, "
                     f"{_n(db['failed_messages'])} failed · success {db['success_rate']:.1f}%"),
        ("messages 24 h", f"{_n(msgs['sent'])} sent · {_n(msgs['delivered'])} delivered · {_n(msgs['failed'])} "
                          f"failed · {_n(msgs['expired'])} expired"),
        ("retries 24 h", f"{_n(msgs['retries'])} retries · {_n(msgs['fallbacks'])} fallbacks"),
        ("attempts 24 h", f"{_n(attempts['total'])} · {_n(attempts['failed'])} failed · {accepted} accepted · "
                          f"cost {metrics['total_cost']:.4f}"),
    ):
        grid.add_row(label, value)
    console.print("[bold]Fleet[/] (from storage, the same from every process)")
    console.print(grid)
    console.print(channels_table(metrics["channels"]))
    console.print(_process_line(metrics["this_process"]), style="dim", overflow="fold")


def _process_line(p: Mapping[str, Any]) -> str:
    c = p["counters"]
    if not p["is_running"]:
        return "This process does not work the queue; every figure above is the fleet's."
    return (f"This process ({escape(p['worker_id'])}): {p['inflight']} in flight of {p['worker_threads']} send slots "
            f"({p['threads_running']} threads) · "
            f"since it started: {c['sent']} sent, {c['failed']} failed, {c['retries']} retries, "
            f"{c['fallbacks']} fallbacks, {c['channel_faults']} channel faults")
