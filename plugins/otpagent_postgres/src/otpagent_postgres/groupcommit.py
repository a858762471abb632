"""Group commit: short writes from many threads share one transaction, one round trip, one flush.

Every dispatcher thread records its message's outcome with one statement. Run alone, each is
its own transaction: a pool checkout, a round trip and a WAL flush (an fsync with the default
``synchronous_commit``), which is most of what a message costs the database. Here concurrent
callers queue their writes; whoever finds no group being written leads the next one: it takes
every write queued so far, sends their statements in one pipeline inside one transaction,
commits once, and hands each caller its own result. Writes that arrive meanwhile form the
next group, so under load groups grow by themselves and a lone write waits for nothing.

What each caller is promised does not change: its write is applied when the call returns
(committed), or the call raises.

- A statement that fails aborts the shared transaction, so nothing of that group applied:
  each write is then run again alone, so only the caller whose write fails hears of it.
- A commit that fails in flight leaves every write of the group uncertain: ``Database.run``
  retries the group with ``uncertain=True``, and each write runs its own checks (the same
  ones a lone write runs after an uncertain commit) instead of its statement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from psycopg.rows import tuple_row

from otpagent.storage.batching import CommitQueue, as_exception
from otpagent_postgres.connection import Conn, Database, Work

__all__ = ["GroupCommit", "GroupedWrite"]

T = TypeVar("T")
#: Results come as tuples: naming the columns of every statement's one-row answer (dict rows)
#: cost more than the answer itself.
Cursor = psycopg.Cursor[tuple[Any, ...]]
Statement = tuple[bytes, Sequence[Any]]


class Merge(Protocol):
    """Writes several items of one kind with one statement (see :mod:`otpagent_postgres.outcomes`)."""

    def statement(self, items: Sequence[Any]) -> Statement | None:
        """The statement writing every item, or None when these cannot share one."""

    def read(self, cursor: Cursor, count: int) -> list[Any]:
        """Each item's result, in order, from the statement's cursor."""


class GroupedWrite(Generic[T]):
    """One caller's write: ``statement`` (query and parameters) and ``read`` (its result from
    the statement's cursor, which returns tuples) on a first try, or ``work`` (the whole unit
    of work, run in the group's transaction) when it has no single statement or the group is
    retried. With ``merge``, writes of the same kind in one group share one statement made of
    their ``item`` s."""

    __slots__ = ("_statement", "error", "item", "merge", "read", "result", "work")

    def __init__(self, work: Work[T], statement: Statement | Callable[[], Statement | None] | None = None,
                 read: Callable[[Cursor], T] | None = None, *, merge: Merge | None = None,
                 item: Any = None) -> None:
        self.work = work
        # A callable is built only when needed: a merged write never needs its own statement.
        self._statement = statement if read is not None else None
        self.read = read
        self.merge = merge if self._statement is not None else None
        self.item = item
        self.result: T | None = None
        self.error: BaseException | None = None

    @property
    def statement(self) -> Statement | None:
        """Its own statement (query, parameters), or None when it has none."""
        if callable(self._statement):
            self._statement = self._statement()
        return self._statement


class GroupCommit:
    """Runs :class:`GroupedWrite` s of concurrent callers in shared transactions on ``db``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Looked up on each group (not bound once), so a test can wrap _commit to see the groups.
        self._writes: CommitQueue[GroupedWrite[Any]] = CommitQueue(lambda group: self._commit(group))  # noqa: PLW0108

    def run(self, write: GroupedWrite[T]) -> T:
        """Apply ``write`` (with whatever else is queued) and return its result, or raise its
        error; blocks until its group is committed."""
        self._writes.run(write)
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set whenever error is None

    def run_each(self, writes: Sequence[GroupedWrite[T]]) -> list[T | Exception]:
        """Apply ``writes`` together in one group (with whatever else is queued); each one's
        result, or the error that kept it from being applied."""
        self._writes.run_many(writes)
        return [w.result if w.error is None else as_exception(w.error) for w in writes]  # type: ignore[misc]

    def _commit(self, group: list[GroupedWrite[Any]]) -> None:
        try:
            if len(group) == 1:
                self._alone(group[0], uncertain=False)
            else:
                self._together(group)
        except BaseException as exc:  # e.g. KeyboardInterrupt in the leader: nobody may think it applied
            for write in group:
                if write.error is None:
                    write.result = None
                    write.error = RuntimeError(f"the write was abandoned: {type(exc).__name__} in the committing "
                                               "thread (it may or may not have been applied)")
            raise

    def _alone(self, write: GroupedWrite[Any], *, uncertain: bool) -> None:
        statement = write.statement

        def work(conn: Conn, uncertain: bool) -> Any:
            if statement is not None and not uncertain:
                assert write.read is not None
                return write.read(self._db.tuple_cursor(conn).execute(*statement))
            return write.work(conn, uncertain)

        try:
            write.result = self._db.run(work, one_statement=statement is not None, uncertain=uncertain)
        except Exception as exc:
            write.error = exc

    def _together(self, group: list[GroupedWrite[Any]]) -> None:
        tries: list[bool] = []
        try:
            plan = _statements(group)
        except Exception:  # a write could not build its statement: each runs alone, as on any failure
            for write in group:
                self._alone(write, uncertain=False)
            return
        # The usual group (outcomes only) is one merged statement: it then runs in autocommit,
        # its own transaction, in one round trip (no BEGIN, no COMMIT, no pipeline), as a lone
        # write does. A retry after an uncertain commit runs in a transaction, as usual.
        single = len(plan) == 1 and len(plan[0][0]) == len(group)
        try:
            results = self._db.run(functools.partial(_group_work, self._db, group, plan, single, tries),
                                   one_statement=single)
        except psycopg.OperationalError as exc:  # the database stayed away past retry_seconds
            for write in group:
                write.error = exc
            return
        except Exception:
            # One write failed and took the shared transaction with it: nothing of this group
            # applied on this try. An earlier try's commit may have, exactly when a try ran told
            # so (each entry of ``tries`` is what its try was told): then each checks first.
            uncertain = any(tries)
            for write in group:
                self._alone(write, uncertain=uncertain)
            return
        for write, result in zip(group, results, strict=True):
            write.result = result


Planned = tuple[list[int], Statement, Callable[[Cursor], list[Any]]]


def _group_work(db: Database, group: list[GroupedWrite[Any]], plan: list[Planned], single: bool,
                tries: list[bool], conn: Conn, uncertain: bool) -> list[Any]:
    """A group's unit of work for ``Database.run`` (``tries`` records each try's ``uncertain``)."""
    tries.append(uncertain)
    if uncertain:
        return [write.work(conn, True) for write in group]
    if single:
        return _merged(db.tuple_cursor(conn), group, plan[0])
    return _pipelined(conn, group, plan)


def _merged(cursor: Cursor, group: list[GroupedWrite[Any]], planned: Planned) -> list[Any]:
    """The results of a group written by one statement (``planned`` covers every write)."""
    indices, statement, read = planned
    results: list[Any] = [None] * len(group)
    for index, result in zip(indices, read(cursor.execute(*statement)), strict=True):
        results[index] = result
    return results


def _pipelined(conn: Conn, group: list[GroupedWrite[Any]], plan: list[Planned]) -> list[Any]:
    """Every single-statement write in one pipeline (one round trip; writes of one kind merged
    into one statement where their merger allows), then the others."""
    results: list[Any] = [None] * len(group)
    readers: list[tuple[list[int], Cursor, Callable[[Cursor], list[Any]]]] = []
    with conn.pipeline():
        for indices, statement, read in plan:
            readers.append((indices, conn.cursor(row_factory=tuple_row).execute(*statement), read))
    for indices, cursor, read in readers:
        for index, result in zip(indices, read(cursor), strict=True):
            results[index] = result
    sent = {index for indices, _, _ in readers for index in indices}
    for index, write in enumerate(group):
        if index not in sent:
            results[index] = write.work(conn, False)
    return results


def _statements(group: list[GroupedWrite[Any]]) -> list[Planned]:
    """(which writes, statement, reader of their results) for every statement to send."""
    kinds: dict[int, list[int]] = {}
    out: list[Planned] = []
    for index, write in enumerate(group):
        if write.merge is not None:
            kinds.setdefault(id(write.merge), []).append(index)
    merged: set[int] = set()
    for indices in kinds.values():
        merge = group[indices[0]].merge
        assert merge is not None
        shared = merge.statement([group[i].item for i in indices]) if len(indices) > 1 else None
        if shared is not None:
            out.append((indices, shared, functools.partial(merge.read, count=len(indices))))
            merged.update(indices)
    for index, write in enumerate(group):
        if index not in merged and (statement := write.statement) is not None:
            assert write.read is not None
            out.append(([index], statement, functools.partial(_one, write.read)))
    return out


def _one(read: Callable[[Cursor], Any], cursor: Cursor) -> list[Any]:
    return [read(cursor)]
