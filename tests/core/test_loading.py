"""A file of messages is queued whole or not at all, and running it again queues nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otpagent import IntelligentOTPAgent, InvalidRequest
from otpagent.errors import RateLimited
from otpagent.loading import load_file
from tests.conftest import agent_config

ROWS = [
    {"phone_number": "+447700900123", "message_type": "alert", "content": "Card used abroad", "priority": "CRITICAL"},
    {"phone_number": "+447700900124", "message_type": "otp", "user_id": "u-1"},
    {"email": "ada@example.com", "message_type": "reminder", "content": "Tomorrow at 9", "subject": "Reminder"},
    {"phone_number": "+447700900125", "message_type": "otp"},
]


def stored_messages(agent: IntelligentOTPAgent) -> int:
    return int(agent.capabilities.housekeeping.stats(agent.clock()).total)


def test_a_file_with_codes_is_queued_in_one_go(tmp_path: Path) -> None:
    file = tmp_path / "load.json"
    file.write_text(json.dumps(ROWS))
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        result = load_file(agent, file)

        assert (len(result.message_ids), result.created) == (4, 4)
        reports = [agent.get_delivery_report(i) for i in result.message_ids]
        assert [r.message_type.value for r in reports] == ["alert", "otp", "reminder", "otp"]
        assert stored_messages(agent) == 4


def test_running_the_same_file_again_queues_nothing_and_sends_no_second_code(tmp_path: Path) -> None:
    file = tmp_path / "load.json"
    file.write_text(json.dumps(ROWS))
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        first = load_file(agent, file)
        again = load_file(agent, file)  # inside the resend cooldown: a second code would be refused

        assert again.message_ids == first.message_ids
        assert (again.created, again.already_queued) == (0, 4)
        assert stored_messages(agent) == 4
        assert agent.load_messages_from_json(file) == 4


def test_a_refused_code_leaves_nothing_of_the_file_queued(tmp_path: Path) -> None:
    file = tmp_path / "load.json"
    file.write_text(json.dumps(ROWS))
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        agent.send_otp("+447700900125")  # row 3's number is inside its resend cooldown now

        with pytest.raises(RateLimited, match=r"rows \[3\] cooldown; nothing was queued"):
            load_file(agent, file)

        assert stored_messages(agent) == 1, "only the code sent before the load"


def test_a_bad_row_anywhere_is_reported_with_its_index_and_nothing_is_queued(tmp_path: Path) -> None:
    rows = [*ROWS, {"phone_number": "12", "message_type": "otp"}, {"email": "x@example.com", "content": ""}]
    file = tmp_path / "load.json"
    file.write_text(json.dumps(rows))
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        with pytest.raises(InvalidRequest) as exc:
            load_file(agent, file)

        assert sorted({e.index for e in exc.value.errors}) == [4, 5]
        assert stored_messages(agent) == 0


def test_a_named_load_is_idempotent_across_edits_of_the_file(tmp_path: Path) -> None:
    file = tmp_path / "load.json"
    file.write_text(json.dumps(ROWS[:2]))
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        first = load_file(agent, file, load_id="campaign-7")
        file.write_text(json.dumps(ROWS))  # two rows appended
        second = load_file(agent, file, load_id="campaign-7")

        assert second.message_ids[:2] == first.message_ids
        assert (second.created, second.already_queued) == (2, 2)
