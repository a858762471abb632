"""The time to deliver a callback reports: by the provider's timestamp when it has one."""

from __future__ import annotations

from otpagent.model import Attempt, Outcome, Status
from otpagent.protocols import ProviderEvent
from otpagent.provider_events import time_to_deliver_ms


def _attempt(finished_at: float) -> Attempt:
    return Attempt(message_id="m", number=1, channel="sms", outcome=Outcome.ACCEPTED, started_at=finished_at - 0.2,
                   finished_at=finished_at, provider_message_id="SM1")


def _event(status: Status, occurred_at: float | None = None) -> ProviderEvent:
    return ProviderEvent(source="t", event_id="e", provider_message_id="SM1", status=status, occurred_at=occurred_at)


def test_the_providers_timestamp_wins_over_the_reports_arrival() -> None:
    assert time_to_deliver_ms(_attempt(1000.0), _event(Status.DELIVERED, occurred_at=1004.5), now=1090.0) == 4500.0


def test_without_a_timestamp_the_arrival_of_the_report_counts() -> None:
    assert time_to_deliver_ms(_attempt(1000.0), _event(Status.READ), now=1012.0) == 12000.0


def test_a_clock_skewed_timestamp_never_gives_a_negative_time() -> None:
    assert time_to_deliver_ms(_attempt(1000.0), _event(Status.DELIVERED, occurred_at=999.0), now=1001.0) == 0.0


def test_only_deliveries_have_a_time_to_deliver() -> None:
    assert time_to_deliver_ms(_attempt(1000.0), _event(Status.UNDELIVERED), now=1010.0) is None
