"""The claimer's rhythm with a work wake-up: a backlog is claimed claim after claim; once a
claim brings fewer messages than it asked for, the claimer waits for news of more instead of
claiming again at once (which, on a trickle, was an empty claim for every message)."""

from __future__ import annotations

from typing import Any

from otpagent import IntelligentOTPAgent
from tests.conftest import wait_for

PHONE = "+447700900124"


def _recorded(agent: IntelligentOTPAgent) -> list[tuple[str, int]]:
    """Each claim (with how many it brought) and each wait of the claimer, in order."""
    calls: list[tuple[str, int]] = []
    storage: Any = agent.storage
    claim, wait = storage.claim_due, storage.wait_for_work

    def claim_due(*args: Any, **kwargs: Any) -> Any:
        messages = claim(*args, **kwargs)
        calls.append(("claim", len(messages)))
        return messages

    def wait_for_work(timeout: float) -> None:
        calls.append(("wait", 0))
        wait(timeout)

    storage.claim_due, storage.wait_for_work = claim_due, wait_for_work
    return calls


def test_after_a_claim_that_took_everything_due_the_claimer_waits(make_agent) -> None:
    agent = make_agent(storage={"backend": "memory"}, dispatcher={"workers": 4, "poll_interval_seconds": 0.05})
    calls = _recorded(agent)
    assert agent.capabilities.wakeup is agent.storage
    agent.send_message({"phone_number": PHONE, "content": "one", "message_type": "alert"})

    agent.start_processing()
    assert wait_for(lambda: agent.dispatcher.counters["sent"] == 1)
    agent.stop_processing()

    first = calls.index(("claim", 1))
    assert calls[first + 1] == ("wait", 0), f"claimed again at once after a claim of 1 of 4: {calls[:first + 3]}"


def test_a_backlog_is_claimed_without_waiting_between_claims(make_agent) -> None:
    agent = make_agent(storage={"backend": "memory"}, dispatcher={"workers": 2, "poll_interval_seconds": 0.05})
    calls = _recorded(agent)
    agent.send_bulk_messages([{"phone_number": PHONE, "content": f"m{i}", "message_type": "alert"}
                              for i in range(9)])

    agent.start_processing()
    assert wait_for(lambda: agent.dispatcher.counters["sent"] == 9)
    agent.stop_processing()

    claimed = 0
    for kind, count in calls:
        if kind == "wait":
            break
        claimed += count
    assert claimed == 9, f"the claimer waited with messages due: {calls}"
