"""The OTP endpoints' call batcher: calls that arrive while a batch runs go together next."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import otpagent.server.batching as batching
from otpagent import IntelligentOTPAgent
from otpagent.server import create_app
from otpagent.server.batching import MAX_BATCH, CallBatcher
from tests.service.conftest import service_config


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch run."""
    sizes: list[int] = []
    run_gathered = batching.run_gathered

    def recording(calls: list[Callable[[], Any]]) -> Any:
        sizes.append(len(calls))
        return run_gathered(calls)

    monkeypatch.setattr(batching, "run_gathered", recording)
    return sizes


async def _while_first_blocks(batcher: CallBatcher, later: list[Callable[[], Any]]) -> list[Any]:
    """Run a first call that holds the batcher's thread until every later call is queued."""
    release = threading.Event()
    first = asyncio.ensure_future(batcher.run(lambda: release.wait(10)))
    await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(batcher.run(call)) for call in later]
    for _ in range(100):  # each task queues its call at its first step
        await asyncio.sleep(0)
        if len(batcher._waiting) == len(later):
            break
    release.set()
    return await asyncio.gather(first, *tasks, return_exceptions=True)


def test_calls_arriving_during_a_batch_run_together_next(batches: list[int]) -> None:
    batcher = CallBatcher()
    try:
        results = asyncio.run(_while_first_blocks(batcher, [lambda n=n: n * n for n in range(5)]))
    finally:
        batcher.close()
    assert results == [True, 0, 1, 4, 9, 16]
    assert batches == [1, 5]


def test_a_batch_takes_at_most_max_batch_calls(batches: list[int]) -> None:
    batcher = CallBatcher()
    try:
        results = asyncio.run(_while_first_blocks(batcher, [lambda n=n: n for n in range(MAX_BATCH + 3)]))
    finally:
        batcher.close()
    assert results[1:] == list(range(MAX_BATCH + 3))
    assert batches == [1, MAX_BATCH, 3]


def test_an_exception_reaches_its_own_caller_only() -> None:
    def refuse() -> None:
        raise ValueError("no")

    batcher = CallBatcher()
    try:
        results = asyncio.run(_while_first_blocks(batcher, [lambda: 1, refuse, lambda: 3]))
    finally:
        batcher.close()
    assert results[1] == 1 and results[3] == 3
    assert isinstance(results[2], ValueError)


def test_a_call_runs_in_its_requests_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")

    async def request(name: str) -> str:
        request_id.set(name)
        return await batcher.run(request_id.get)

    async def main() -> list[str]:
        return await asyncio.gather(*(request(f"r{i}") for i in range(4)))

    batcher = CallBatcher()
    try:
        assert asyncio.run(main()) == ["r0", "r1", "r2", "r3"]
    finally:
        batcher.close()


def test_a_request_that_left_does_not_stop_the_others_answers() -> None:
    ran: list[str] = []

    async def main() -> list[Any]:
        release = threading.Event()
        first = asyncio.ensure_future(batcher.run(lambda: release.wait(10)))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(batcher.run(lambda: ran.append("gone")))
        stays = asyncio.ensure_future(batcher.run(lambda: ran.append("stays") or "answered"))
        await asyncio.sleep(0)
        gone.cancel()  # its client disconnected while it waited
        release.set()
        return await asyncio.gather(first, stays)

    batcher = CallBatcher()
    try:
        assert asyncio.run(main()) == [True, "answered"]
    finally:
        batcher.close()
    assert ran == ["gone", "stays"]  # a call once queued still runs, as on a thread


def test_after_close_a_call_fails_with_a_clear_error() -> None:
    batcher = CallBatcher()
    batcher.close()

    async def main() -> None:
        await batcher.run(lambda: 1)

    with pytest.raises(RuntimeError, match="shutdown"):
        asyncio.run(main())


def test_the_service_batches_otp_calls_on_sqlite(tmp_path: Path) -> None:
    with IntelligentOTPAgent(service_config(tmp_path)) as agent:
        assert create_app(agent).state.service.batcher is not None


def test_a_call_raising_stop_iteration_gets_an_error_and_the_next_batch_still_runs() -> None:
    def ends() -> None:
        raise StopIteration

    batcher = CallBatcher()
    try:
        results = asyncio.run(_while_first_blocks(batcher, [ends, lambda: "after"]))
    finally:
        batcher.close()
    assert isinstance(results[1], RuntimeError) and "StopIteration" in str(results[1])
    assert results[2] == "after"


def test_concurrent_requests_through_a_live_server_each_get_their_own_answer(
        make_server: Any, outbox: Any) -> None:
    """24 clients at once: codes issued, checked right and wrong, a recipient's second code
    refused by its send limit, lone messages queued; the batches mix them, each answer is the
    request's own."""
    import concurrent.futures

    import httpx

    from tests.service.conftest import API_KEY

    roomy = {"per_minute": 600, "burst": 100}  # the wrong guesses below stay within the failure budgets
    live = make_server(limits={"otp_send_per_recipient": {"per_minute": 1, "burst": 1},
                               "otp_verify_failures_per_key": roomy, "otp_verify_failures_per_ip": roomy})
    numbers = [f"+4477009004{i:02d}" for i in range(12)]
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def at_once(fn: Callable[[int], Any], count: int) -> list[Any]:
        barrier = threading.Barrier(count)

        def run(i: int) -> Any:
            barrier.wait(10)
            return fn(i)

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(run, range(count)))

    def issue(i: int) -> httpx.Response:
        with httpx.Client(base_url=live.base_url, headers=headers, timeout=15) as client:
            if i < 12:
                return client.post("/v1/otp", json={"phone_number": numbers[i]})
            if i < 18:  # a second code for a number this batch also sends one to: its limit is 1
                return client.post("/v1/otp", json={"phone_number": numbers[i - 12]})
            return client.post("/v1/messages", json={"phone_number": numbers[i - 18], "content": f"note {i}"})

    sent = at_once(issue, 24)
    codes_sent = [r for r in sent[:18] if r.status_code == 202]
    assert sorted(r.status_code for r in sent[:18]) == [202] * 12 + [429] * 6
    assert {r.json()["message_id"] for r in codes_sent}.isdisjoint({r.json()["message_id"] for r in sent[18:]})
    assert all(r.status_code == 202 for r in sent[18:])
    first_code = {}
    for r, number in [(r, numbers[i if i < 12 else i - 12]) for i, r in enumerate(sent[:18])]:
        if r.status_code == 202:
            first_code[number] = outbox.code_for(r.json()["message_id"], timeout=15)

    def verify(i: int) -> dict[str, Any]:
        number = numbers[i % 12]
        code = first_code[number] if i < 12 else ("000000" if first_code[number] != "000000" else "111111")
        with httpx.Client(base_url=live.base_url, headers=headers, timeout=15) as client:
            return dict(client.post("/v1/otp/verify", json={"recipient": number, "code": code}).json())

    answers = at_once(verify, 24)
    # Each number got one right guess and one wrong one, in either order: one verifies; the
    # wrong one is invalid, whether it came before the right one or after it consumed the code.
    for i in range(12):
        right, wrong = answers[i], answers[i + 12]
        assert right == {"verified": True, "reason": "verified"}, (numbers[i], right)
        assert wrong == {"verified": False, "reason": "invalid"}, (numbers[i], wrong)
