"""The writing endpoints' blocking calls, run in batches on one thread with their writes gathered.

A request handler hands its blocking call (issue a code, check one, queue messages) to
:meth:`CallBatcher.run`.
When no batch is running, the call starts one at once, on the batcher's thread; calls that
arrive meanwhile wait for it and go together as the next batch (at most :data:`MAX_BATCH`).
A batch runs through :func:`~otpagent.storage.gathering.run_gathered`, so the writes of its calls
are committed as one group, and its answers reach the event loop in one wake-up. No call waits
for a timer: an idle server starts a lone call at once, as the thread pool did.

Used when the storage gathers writes (SQLite); with any other the handlers use the thread pool,
where concurrent calls meet in the backend's own group commit.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from otpagent.storage.gathering import Outcome, run_gathered

__all__ = ["MAX_BATCH", "CallBatcher"]

T = TypeVar("T")

#: Calls in one batch at most; more wait for the next (a batch's writes are one commit).
MAX_BATCH = 64

_Waiting = tuple[contextvars.Context, Callable[[], Any], "asyncio.Future[Any]"]


class CallBatcher:
    """Runs blocking calls of one event loop on one thread, a batch at a time."""

    def __init__(self) -> None:
        # One thread: a second batch running beside the first measured slower (each smaller, and
        # their writes are committed one group after the other anyway).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="otpagent-api-calls")
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._running = False

    async def run(self, call: Callable[[], T]) -> T:
        """``call()``'s result (or its exception), run in the next batch, in this task's context."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append((contextvars.copy_context(), call, future))
        if not self._running:
            self._start(loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), MAX_BATCH))]
        calls = [functools.partial(context.run, call) for context, call, _ in batch]
        self._running = True
        try:
            done = loop.run_in_executor(self._executor, run_gathered, calls)
        except RuntimeError as exc:  # the executor was shut down: the app is stopping
            self._running = False
            self._answer(batch, [(False, exc)] * len(batch))
            return
        done.add_done_callback(functools.partial(self._landed, loop, batch))

    def _landed(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting], done: asyncio.Future[list[Outcome]]
                ) -> None:
        self._running = False
        try:
            outcomes = done.result()
        except BaseException as exc:  # every caller of the batch hears it
            outcomes = [(False, exc)] * len(batch)
        try:
            self._answer(batch, outcomes)
        finally:  # the calls waiting meanwhile never wait for another request to start them
            if self._waiting:
                self._start(loop)

    @staticmethod
    def _answer(batch: list[_Waiting], outcomes: list[Outcome]) -> None:
        for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its request was cancelled (the client left); the call ran
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, StopIteration):  # a future refuses it (it would end a coroutine)
                future.set_exception(RuntimeError(f"the call raised {value!r}"))
            else:
                future.set_exception(value)

    def close(self) -> None:
        """Finish the running batch and stop the thread; later calls fail with RuntimeError."""
        self._executor.shutdown(wait=True)
