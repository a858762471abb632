"""Bad input gets a clear error naming what is wrong, and nothing is ever half-written."""

from __future__ import annotations

import json

import pytest

from otpagent import InvalidRequest, MessageRequest, MessageType, Priority


def test_invalid_phone_number_is_rejected_with_the_number_and_the_reason():
    with pytest.raises(InvalidRequest) as exc:
        MessageRequest(phone_number="07700900123", message_type="alert", content="x")
    assert "phone_number" in str(exc.value) and "'07700900123'" in str(exc.value)
    assert "country code" in str(exc.value)


def test_phone_numbers_are_normalised_to_e164():
    request = MessageRequest(phone_number="+44 (0)7700 900123", message_type="alert", content="x")
    assert request.phone_number == "+447700900123"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("message_type", "spam", "unknown message type 'spam'"),
        ("priority", "URGENT", "unknown priority 'URGENT'"),
        ("email", "not-an-address", "not a valid email address"),
        ("scheduled_for", "tomorrow-ish", "not an ISO 8601"),
    ],
)
def test_unknown_or_malformed_fields_are_named(field, value, needle):
    with pytest.raises(InvalidRequest) as exc:
        MessageRequest(**{"phone_number": "+447700900123", "content": "x", field: value})
    assert field in str(exc.value) and needle in str(exc.value)


def test_content_is_required_except_for_otps():
    with pytest.raises(InvalidRequest, match="content: required for alert"):
        MessageRequest(phone_number="+447700900123", message_type="alert")


def test_content_too_long_for_every_channel_is_rejected_naming_the_limit(make_agent):
    agent = make_agent(channels={"sms": {"plugin": "console", "kind": "sms", "quiet": True}})
    with pytest.raises(InvalidRequest) as exc:
        agent.send_message(MessageRequest(phone_number="+447700900123", content="x" * 2000, priority=Priority.HIGH))
    assert "content" in str(exc.value) and "at most 1600" in str(exc.value)
    assert agent.storage.stats(0).total == 0


def test_unknown_channel_in_request_is_named(make_agent):
    agent = make_agent()
    with pytest.raises(InvalidRequest, match="unknown channel"):
        agent.send_message(MessageRequest(phone_number="+447700900123", content="x", channels=["pigeon"]))


def test_a_batch_with_bad_entries_reports_each_and_enqueues_nothing(make_agent):
    agent = make_agent()
    with pytest.raises(InvalidRequest) as exc:
        agent.send_bulk_messages([
            {"phone_number": "+447700900123", "content": "fine"},
            {"phone_number": "12", "content": "bad number"},
            {"phone_number": "+447700900123", "message_type": "alert"},
            {"phone_number": "+447700900123", "content": "x", "colour": "red", "priority": "URGENT"},
        ])
    errors = {(e.index, e.field) for e in exc.value.errors}
    assert errors == {(1, "phone_number"), (2, "content"), (3, "colour"), (3, "priority")}
    assert agent.storage.stats(0).total == 0


def test_json_file_with_any_invalid_entry_is_rejected_whole(make_agent, tmp_path):
    agent = make_agent()
    path = tmp_path / "messages.json"
    path.write_text(json.dumps([
        {"phone_number": "+447700900127", "message_type": "otp", "priority": "HIGH"},
        {"phone_number": "+447700900128", "content": "Welcome", "priority": "MEDIUM", "preferred_channel": "Email"},
        {"phone_number": "+4477", "content": "short number"},
    ]))
    with pytest.raises(InvalidRequest) as exc:
        agent.load_messages_from_json(path)
    assert [(e.index, e.field) for e in exc.value.errors] == [(2, "phone_number")]
    assert agent.storage.stats(0).total == 0


def test_malformed_json_file_names_line_and_column(make_agent, tmp_path):
    agent = make_agent()
    path = tmp_path / "broken.json"
    path.write_text('[{"phone_number": "+447700900127",\n  "content": }]')
    with pytest.raises(InvalidRequest, match=r"malformed JSON at line 2, column 14"):
        agent.load_messages_from_json(path)


def test_json_file_in_the_original_shape_loads(make_agent, tmp_path, outbox):
    agent = make_agent()
    path = tmp_path / "sample_messages.json"
    path.write_text(json.dumps([
        {"phone_number": "+447700900127", "message_type": "otp", "priority": "HIGH", "preferred_channel": "SMS",
         "user_id": "user789", "callback_url": "https://api.example.com/webhook"},
        {"phone_number": "+447700900128", "message_type": "notification", "content": "Welcome to our service!",
         "priority": "MEDIUM", "preferred_channel": "Email"},
    ]))
    assert agent.load_messages_from_json(path) == 2
    agent.start_processing()
    assert agent.wait_until_idle(10)
    assert len(outbox.entries()) == 2


def test_reused_idempotency_key_returns_the_same_id_and_a_different_body_is_an_error(make_agent):
    agent = make_agent()
    first = agent.send_message(MessageRequest(phone_number="+447700900123", content="once", idempotency_key="k1"))
    again = agent.send_message(MessageRequest(phone_number="+447700900123", content="once", idempotency_key="k1"))
    assert first == again
    with pytest.raises(InvalidRequest, match="idempotency_key"):
        agent.send_message(MessageRequest(phone_number="+447700900123", content="twice", idempotency_key="k1"))
    assert agent.storage.stats(0).total == 1


@pytest.mark.parametrize(("value", "expected"), [
    ("HIGH", Priority.HIGH), ("high", Priority.HIGH), (" High ", Priority.HIGH), (3, Priority.HIGH),
    (Priority.LOW, Priority.LOW),
])
def test_priority_is_read_from_its_name_any_case_or_its_number(value, expected):
    assert Priority.parse(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("otp", MessageType.OTP), (" OTP ", MessageType.OTP), ("Reminder", MessageType.REMINDER),
    (MessageType.ALERT, MessageType.ALERT),
])
def test_message_type_is_read_from_its_value_any_case(value, expected):
    assert MessageType.parse(value) is expected


@pytest.mark.parametrize("value", [True, 9, None, ["HIGH"], "HIGHEST"])
def test_what_is_not_a_priority_is_refused_by_name(value):
    with pytest.raises(InvalidRequest, match="unknown priority"):
        Priority.parse(value)
