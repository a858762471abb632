"""Write gathering: several blocking calls on one thread, their storage writes committed together.

An API request's blocking work (issue a code, check one, queue a message) is some Python and
one storage write, a commit. Run each on a thread of its own, concurrent requests meet in the
backend's group commit, but every request then pays a thread hand-over, a follower's wake-up
after the commit and its share of the interpreter lock's contention among the threads: in
``otpagent serve`` on SQLite, 45% of the process's CPU was the kernel switching threads
(docs/benchmarks.md, seventeenth round).

:func:`run_gathered` runs several such calls on the calling thread instead, each in a greenlet
(a coroutine of C stacks, as SQLAlchemy's asyncio bridge uses): a call that reaches a write
made through :func:`park` is suspended there; once every call is suspended or finished, the
parked writes are committed, those of one backend as one group of its group commit, and each
call resumes with its own result or exception. A call making two writes parks twice, in two
rounds. Nothing changes for the calls themselves: the same code, the same order of their own
writes, the same errors; only fewer threads take turns.

The rule for what runs this way: a lock held across a write that parks would stop every other
call of the batch that wants it (they share the thread), so only leaf writes park (a backend
passes ``gather=True`` on its enqueue, its OTP issue and check and its rate-limit buckets,
which nothing calls holding a lock); every other write runs as it would on any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

__all__ = ["Outcome", "active", "forget_reads", "gathers", "park", "round_cache", "run_gathered"]

T = TypeVar("T")
W = TypeVar("W")

#: ``(True, result)`` or ``(False, the exception it raised)``.
Outcome = tuple[bool, Any]

#: Rounds of one :func:`run_gathered` at most: each round commits at least one parked write of
#: every call still running, so this bounds the writes one call may make.
MAX_ROUNDS = 1_000

_state = threading.local()


def gathers(storage: object) -> bool:
    """Whether ``storage`` parks its writes in a gathered call (its ``gathers_writes``) and
    greenlet is installed (it comes with ``otpagent[server]``)."""
    if getattr(storage, "gathers_writes", False) is not True:
        return False
    try:
        import greenlet  # noqa: F401
    except ImportError:
        return False
    return True


def active() -> bool:
    """Whether this code runs inside a call of :func:`run_gathered` (so a write may :func:`park`)."""
    driver = getattr(_state, "driver", None)
    if driver is None:
        return False
    import greenlet

    return greenlet.getcurrent() is not driver


def round_cache() -> dict[Hashable, Any] | None:
    """Inside a gathered call, a dict the calls of this round share, emptied whenever parked
    writes are committed; None elsewhere.

    For reads of committed state that a backend may answer once a round: between two commits
    the calls of a batch run one after another on this thread and nothing of theirs is
    committed (a write that does not park empties it: :func:`forget_reads`), so a second read
    of the same row could only differ by another process's commit landing in those
    microseconds, as if the first call had read a moment later. (SQLite's
    peeks at rate-limit buckets: every verification of a round peeks the same two or three
    failure budgets, and each read outside a transaction is a read transaction of its own.)
    """
    if not active():
        return None
    cache: dict[Hashable, Any] = _state.cache
    return cache


def forget_reads() -> None:
    """Empty this thread's round cache, if any: a write was committed outside the round's groups
    (a write that does not park runs at once, as on any thread), so what was read may differ."""
    cache = getattr(_state, "cache", None)
    if cache:
        cache.clear()


class _Parked:
    __slots__ = ("item", "key", "run_many")

    def __init__(self, key: Hashable, run_many: Callable[[list[Any]], list[Outcome]], item: Any) -> None:
        self.key = key
        self.run_many = run_many
        self.item = item


class _Done:
    __slots__ = ("outcome",)

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def park(key: Hashable, run_many: Callable[[list[W]], list[Outcome]], item: W) -> Any:
    """Suspend this call until ``item`` is committed with the batch's other writes of ``key``;
    its result, or raise its exception.

    ``run_many(items)`` commits the items of one key together (one group) and returns each
    one's :data:`Outcome`, in order. Only inside a gathered call (:func:`active`).
    """
    if not active():
        raise RuntimeError("park() outside a gathered call")
    ok, value = _state.driver.switch(_Parked(key, run_many, item))
    if ok:
        return value
    raise value


def run_gathered(calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
    """Run every call to its end on this thread, each one's parked writes committed together
    with the others'; each call's :data:`Outcome`, in order. Not reentrant."""
    import greenlet

    if getattr(_state, "driver", None) is not None:
        raise RuntimeError("run_gathered() inside a gathered call")
    driver = greenlet.getcurrent()
    batch = _Batch([greenlet.greenlet(_body(call), parent=driver) for call in calls])
    _state.driver = driver
    _state.cache = {}
    try:
        for i in range(len(calls)):
            batch.resume(i)
        for _round in range(MAX_ROUNDS):
            if not batch.parked:
                break
            batch.commit_round()
        else:
            batch.fail_parked(RuntimeError(f"a gathered call made more than {MAX_ROUNDS} writes"))
    finally:
        _state.driver = None
        _state.cache = {}
    return [outcome if outcome is not None else (False, RuntimeError("the call did not finish"))
            for outcome in batch.outcomes]


class _Batch:
    """The calls of one :func:`run_gathered`: each one's outcome, or the write it waits on."""

    def __init__(self, lets: list[Any]) -> None:
        self.lets = lets
        self.outcomes: list[Outcome | None] = [None] * len(lets)
        self.parked: dict[int, _Parked] = {}

    def resume(self, i: int, *value: Outcome) -> None:
        """Run call ``i`` until it parks a write or ends (the first switch starts it)."""
        landed = self.lets[i].switch(*value)
        if isinstance(landed, _Parked):
            self.parked[i] = landed
        else:
            self.outcomes[i] = landed.outcome

    def commit_round(self) -> None:
        """Commit every parked write, one group per backend, and resume each call with its own."""
        groups: dict[Hashable, list[int]] = {}
        for i, write in self.parked.items():
            groups.setdefault(write.key, []).append(i)
        for members in groups.values():
            results = _commit([self.parked.pop(i) for i in members])
            forget_reads()  # what the round read may have changed
            for i, result in zip(members, results, strict=True):
                self.resume(i, result)

    def fail_parked(self, error: Exception) -> None:
        """Resume each parked call with ``error``, so it unwinds (its finally blocks run)."""
        for i in list(self.parked):
            del self.parked[i]
            self.resume(i, (False, error))


def _commit(writes: list[_Parked]) -> list[Outcome]:
    """The outcomes of one key's parked writes; a failure of the commit itself fails each."""
    try:
        results = writes[0].run_many([w.item for w in writes])
    except BaseException as exc:  # handed to every caller, which re-raises it
        return [(False, exc)] * len(writes)
    if len(results) != len(writes):
        error = RuntimeError(f"run_many answered {len(results)} outcomes for {len(writes)} writes")
        return [(False, error)] * len(writes)
    return results


def _body(call: Callable[[], Any]) -> Callable[[], _Done]:
    def run() -> _Done:
        try:
            return _Done((True, call()))
        except BaseException as exc:  # the caller's outcome
            return _Done((False, exc))

    return run
