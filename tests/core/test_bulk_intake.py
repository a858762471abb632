"""A bulk send validated a chunk at a time: the store gets each chunk before the next is
validated, and the errors (and what is written) are the same as validating the batch first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from otpagent import IntelligentOTPAgent
from otpagent.bulk_intake import CHUNK_SIZE, validated_chunks
from otpagent.errors import FieldError, InvalidRequest
from otpagent.protocols import NewMessage


def _requests(count: int) -> list[dict[str, Any]]:
    return [{"phone_number": f"+4477009{i:05d}", "content": f"hello {i}"} for i in range(count)]


def _no_objection(_item: NewMessage, _index: int) -> list[FieldError]:
    return []


def _errors(call: Callable[[], object]) -> list[tuple[int | None, str]]:
    with pytest.raises(InvalidRequest) as caught:
        call()
    return [(e.index, e.field) for e in caught.value.errors]


def test_chunks_are_validated_as_they_are_taken() -> None:
    checked: list[int] = []

    def check(_item: NewMessage, index: int) -> list[FieldError]:
        checked.append(index)
        return []

    accepted: list[NewMessage] = []
    chunks = validated_chunks(_requests(70), now=1.0, check=check, accepted=accepted, chunk_size=32)

    first = next(chunks)
    assert (len(first), checked) == (32, list(range(32)))  # nothing of the second chunk yet
    rest = list(chunks)
    assert [len(c) for c in rest] == [32, 6]
    assert checked == list(range(70))
    assert [i.message.phone_number for i in accepted] == [r["phone_number"] for r in _requests(70)]


def test_indexes_count_from_the_start_of_the_whole_batch_and_every_bad_entry_is_named() -> None:
    requests = _requests(100)
    requests[3]["phone_number"] = "nope"
    requests[70]["priority"] = "URGENTEST"
    requests[99] = "not an object"  # type: ignore[call-overload]

    assert _errors(lambda: list(validated_chunks(requests, now=1.0, check=_no_objection, accepted=[]))) == [
        (3, "phone_number"), (70, "priority"), (99, "<entry>")]


def test_nothing_is_yielded_from_the_first_bad_chunk_on() -> None:
    requests = _requests(100)
    requests[40]["phone_number"] = "nope"
    taken: list[int] = []
    accepted: list[NewMessage] = []

    def take() -> None:
        for chunk in validated_chunks(requests, now=1.0, check=_no_objection, accepted=accepted, chunk_size=32):
            taken.append(len(chunk))

    assert _errors(take) == [(40, "phone_number")]
    assert taken == [32] and len(accepted) == 32


def test_when_any_entry_does_not_parse_only_parse_errors_are_reported() -> None:
    # As when the batch was parsed whole before anything else was checked: an OTP entry (refused
    # after parsing) in the first chunk, an unparseable one in the last.
    requests = _requests(80)
    requests[1]["message_type"] = "otp"
    requests[75]["email"] = "not-an-address"
    without_parse_error = [dict(r) for r in requests]
    without_parse_error[75]["email"] = None

    assert _errors(lambda: list(validated_chunks(requests, now=1.0, check=_no_objection, accepted=[]))) == [
        (75, "email")]
    assert _errors(lambda: list(validated_chunks(without_parse_error, now=1.0, check=_no_objection,
                                                 accepted=[]))) == [(1, "message_type")]


@pytest.mark.parametrize("bad", [
    {5: {"phone_number": "nope"}, 90: {"channels": ["NOPE"]}},
    {2: {"message_type": "otp"}, 77: {"channels": ["NOPE"]}},
    {CHUNK_SIZE * 2 + 1: {"phone_number": None}},
], ids=["parse-and-route", "otp-and-route", "no-recipient-in-the-third-chunk"])
def test_a_streamed_bulk_send_refuses_what_the_plain_one_refuses_and_writes_nothing(
        make_agent: Callable[..., IntelligentOTPAgent], bad: dict[int, dict[str, Any]]) -> None:
    streamed = make_agent(storage={"backend": "memory"})
    plain = make_agent(storage={"backend": "memory"})
    plain.capabilities = attrs.evolve(plain.capabilities, streamed_enqueue=None)
    requests = _requests(100)
    for index, fields in bad.items():
        requests[index].update(fields)

    assert streamed.capabilities.streamed_enqueue is not None
    assert _errors(lambda: streamed.send_bulk_messages(requests)) == _errors(lambda: plain.send_bulk_messages(requests))
    assert streamed.storage.recent_messages(1000) == []


def test_a_streamed_bulk_send_queues_every_message_in_order(make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    agent = make_agent(storage={"backend": "memory"})
    requests = _requests(3 * CHUNK_SIZE + 5)

    ids = agent.send_bulk_messages(requests)

    stored = [agent.storage.get_message(i) for i in ids]
    assert [m.phone_number if m else None for m in stored] == [r["phone_number"] for r in requests]
    assert len(set(ids)) == len(requests)


def test_a_generator_of_requests_is_taken_whole_and_one_request_is_refused_by_name(
        make_agent: Callable[..., IntelligentOTPAgent]) -> None:
    agent = make_agent(storage={"backend": "memory"})
    requests = _requests(3 * CHUNK_SIZE)

    ids = agent.send_bulk_messages(r for r in requests)

    assert len(set(ids)) == len(requests)
    assert _errors(lambda: agent.send_bulk_messages(requests[0])) == [(None, "<batch>")]  # type: ignore[arg-type]
