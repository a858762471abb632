"""A message survives the trip through its stored row, whichever way the row is read (by column
name, by position in any column order, with a claim's changes), and ``message_with`` makes what
``attrs.evolve`` makes."""

from __future__ import annotations

import random

import attrs
import pytest

from otpagent.model import Attempt, Message, MessageType, Outcome, Priority, Status, message_with
from otpagent.storage.rows import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    attempt_from_row,
    attempt_to_row,
    attempt_values,
    message_from_row,
    message_reader,
    message_to_row,
    message_values,
)
from otpagent.testing.data import T0, make_message


def _every_field_set() -> Message:
    """A message whose every field differs from its default (each reader must carry each)."""
    return make_message(
        priority=Priority.CRITICAL, message_type=MessageType.OTP, idempotency_key="key-1", secret="enc1:sealed",
        email="a@example.com", subject="Your code", user_id="u-1", channels=("SMS", "EMAIL"),
        preferred_channel="EMAIL", max_retries=4, callback_url="https://example.com/cb",
        metadata={"order": 7, "tags": ["a"]}, expires_at=T0 + 300, route=("SMS", "EMAIL"), route_index=1,
        channel_attempts=2, attempt_count=3, channel="SMS", provider_message_id="SM1", last_error="SMS: busy",
        cost=0.0075, lease_owner="w-1", lease_expires_at=T0 + 30, trace_context={"traceparent": "00-ab-cd-01"},
    )


def test_every_field_has_a_non_default_value_in_the_sample() -> None:
    message = _every_field_set()
    defaults = {a.name: a.default for a in attrs.fields(Message) if a.default is not attrs.NOTHING}
    same = [name for name, default in defaults.items()
            if getattr(message, name) == (default.factory() if isinstance(default, attrs.Factory) else default)]
    assert same == []


@pytest.mark.parametrize("message", [_every_field_set(), make_message()], ids=["every field", "defaults"])
def test_a_message_reads_back_by_name_and_by_position_in_any_order(message: Message) -> None:
    row = {"seq": 12, **message_to_row(message, "fingerprint")}
    columns = list(row)
    random.Random(7).shuffle(columns)

    assert tuple(message_to_row(message, "fingerprint").values()) == message_values(message, "fingerprint")
    assert message_from_row(row) == message
    assert message_reader(tuple(columns))(tuple(row[c] for c in columns)) == message


def test_a_claims_changes_replace_fields_as_the_message_is_read() -> None:
    message = _every_field_set()
    row = message_to_row(message, None)

    claimed = message_from_row(row, status=Status.SENDING, lease_owner="w-2", lease_expires_at=T0 + 60)

    assert claimed == attrs.evolve(message, status=Status.SENDING, lease_owner="w-2", lease_expires_at=T0 + 60)


def test_rows_without_a_message_column_are_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="trace_context"):
        message_reader(tuple(c for c in MESSAGE_COLUMNS if c != "trace_context"))


def test_message_with_makes_what_evolve_makes() -> None:
    message = _every_field_set()
    changes = {"route": ("EMAIL",), "route_index": 0, "secret": "123456"}

    copy = message_with(message, **changes)

    assert copy == attrs.evolve(message, **changes)
    assert copy is not message and message.route == ("SMS", "EMAIL")  # the original is untouched
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        copy.route_index = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"no field.*routes"):
        message_with(message, routes=())


def test_an_attempt_reads_back_from_its_row() -> None:
    attempt = Attempt(message_id="m1", number=2, channel="SMS", outcome=Outcome.TRANSIENT, started_at=T0,
                      finished_at=T0 + 0.25, provider_message_id="SM1", error_code="30003",
                      error_message="unreachable", cost=0.0075, delivery_status=Status.UNDELIVERED,
                      status_updated_at=T0 + 9)

    row = attempt_to_row(attempt)

    assert list(row) == list(ATTEMPT_COLUMNS) and tuple(row.values()) == attempt_values(attempt)
    assert attempt_from_row(row) == attempt
