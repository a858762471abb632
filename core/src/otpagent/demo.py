"""``otpagent demo``: the whole product once, on the embedded default (SQLite + console).

It starts workers, sends an OTP and messages of every type and priority (one scheduled, one
that falls back from a failing channel, one that is retried), reads the code from the console
outbox as a user reads their phone, verifies it (a wrong code first), and prints the delivery
reports and metrics. It runs in a fresh temporary directory so it can be run again at once.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from otpagent.agent import IntelligentOTPAgent
from otpagent.model import MessageRequest, Priority
from otpagent.reporting import print_metrics, reports_table

__all__ = ["demo_config", "run_demo"]


def demo_config(workdir: Path) -> dict[str, object]:
    outbox = str(workdir / "outbox.jsonl")
    console = {"plugin": "console", "outbox": outbox}
    return {
        "storage": {"backend": "sqlite", "path": str(workdir / "otpagent-demo.db")},
        # No load balancing between the two SMS channels, so the fallback shows every time.
        "routing": {"strategy": "priority", "load_balance": False},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0.2, "max_delay_seconds": 1.0},
        "channels": {
            # A provider that rejects everything: HIGH messages fall back from it to the next SMS channel.
            "sms-primary": {**console, "kind": "sms", "weight": 2, "cost": 0.0079, "fail_rate": 1.0,
                            "fail_mode": "permanent"},
            "sms-backup": {**console, "kind": "sms", "cost": 0.0085},
            # Flaky on its first send: the MEDIUM message is retried with backoff.
            "whatsapp": {**console, "kind": "whatsapp", "cost": 0.005, "fail_first": 1},
            "voice": {**console, "kind": "voice", "cost": 0.013},
            "email": {**console, "kind": "email", "cost": 0.0006},
        },
        # The OTP key file beside the demo's database, not in the working directory.
        "otp": {"ttl_seconds": 300, "key_file": str(workdir / "otpagent.key")},
        "sinks": [],
    }


def _read_code(outbox: Path, message_id: str, deadline: float) -> str | None:
    while time.monotonic() < deadline:
        if outbox.exists():
            # Only newline-terminated lines are complete: one may be mid-append right now.
            for line in outbox.read_text(encoding="utf-8").split("\n")[:-1]:
                entry = json.loads(line)
                if entry["message_id"] == message_id:
                    return "".join(ch for ch in entry["body"].split("code is ")[1][:10] if ch.isdigit())
        time.sleep(0.05)
    return None


def run_demo(*, keep: bool = False) -> None:
    # Wide enough for the tables when the output is not a terminal (CI logs, pipes).
    console = Console() if Console().is_terminal else Console(width=150)
    tmp = tempfile.TemporaryDirectory(prefix="otpagent-demo-")
    workdir = Path(tmp.name)
    console.rule("[bold]otpagent demo[/] — embedded SQLite queue + console channels")
    with IntelligentOTPAgent(demo_config(workdir)) as agent:
        agent.start_processing()
        phone = "+447700900123"
        otp_id = agent.send_otp(phone, user_id="user123")
        console.print(f"OTP queued for {phone}: {otp_id}")
        later = datetime.now(UTC) + timedelta(seconds=2)
        ids = agent.send_bulk_messages([
            MessageRequest(phone_number="+447700900124", message_type="alert", content="Security alert: new sign-in",
                           priority=Priority.CRITICAL),
            MessageRequest(phone_number="+447700900125", message_type="alert",
                           content="Card payment of £42.00 declined", priority=Priority.HIGH),
            MessageRequest(phone_number="+447700900126", message_type="notification",
                           content="Your order has shipped", priority=Priority.MEDIUM),
            MessageRequest(phone_number="+447700900127", email="ada@example.com", message_type="reminder",
                           content="Your appointment is tomorrow at 10:00", priority=Priority.LOW),
            MessageRequest(phone_number="+447700900128", message_type="reminder", content="Scheduled: time to renew",
                           priority=Priority.MEDIUM, scheduled_for=later),
        ])
        console.print(f"Queued {len(ids)} messages (one scheduled for {later:%H:%M:%S} UTC)")
        code = _read_code(workdir / "outbox.jsonl", otp_id, time.monotonic() + 10)
        console.print(f"The user reads the code from their phone (console outbox): {code}")
        console.print(f"verify_otp with a wrong code → {agent.verify_otp(phone, '000000')}")
        console.print(f"verify_otp with the right code → {agent.verify_otp(phone, code or '')}")
        console.print(f"verify_otp with the same code again → {agent.verify_otp(phone, code or '')}")
        console.print("Waiting for the scheduled message and the retries...")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            idle = agent.wait_until_idle(timeout=0.5)
            if idle and agent.capabilities.housekeeping.stats(time.time()).by_status.get("scheduled", 0) == 0:
                break
        reports = [agent.get_delivery_report(i) for i in [otp_id, *ids]]
        console.print(reports_table([r for r in reports if r is not None]))
        print_metrics(agent.get_metrics(), console)
    if keep:
        console.print(f"Kept: {workdir}")
        tmp._finalizer.detach()  # type: ignore[attr-defined]
    else:
        tmp.cleanup()
