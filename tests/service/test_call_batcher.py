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
