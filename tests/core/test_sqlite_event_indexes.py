"""SQLite's events indexes: the activity counts read one, and a send's ``attempt`` event is
written to none it does not need (each index page is a WAL frame every commit writes)."""

from __future__ import annotations

from pathlib import Path

from otpagent.model import Event, Status
from otpagent.protocols import ACTIVITY_EVENT_TYPES, MessageUpdate
from otpagent.storage import sqlreads
from otpagent.storage.sqlite import SqliteStorage
from otpagent.testing.data import T0, make_attempt, new


def _plan(storage: SqliteStorage, query: str, params: tuple[object, ...]) -> str:
    return "\n".join(str(row[3]) for row in storage.connection().execute(f"EXPLAIN QUERY PLAN {query}", params))


def test_the_activity_counts_read_the_partial_index_and_never_the_table(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    try:
        counts = _plan(storage, sqlreads.EVENTS_BY_TYPE, (T0, T0 + 10))

        assert "USING COVERING INDEX events_activity_at" in counts
        assert "SCAN events" not in counts
        assert "attempt" not in ACTIVITY_EVENT_TYPES, "the index leaves attempt events out"
        indexes = {row[0] for row in storage.connection().execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
        assert indexes == {"events_message", "events_activity_at"}
    finally:
        storage.close()


def test_counts_and_history_see_every_counted_event_and_no_attempt(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "a.db")
    try:
        item = new()
        storage.enqueue([item], T0)
        mid = item.message.id
        storage.claim_due("w1", 1, 30.0, T0)
        storage.update_message(MessageUpdate(message_id=mid, status=Status.SENT, expected_owner="w1"), T0 + 1,
                               attempt=make_attempt(mid, now=T0 + 1),
                               events=[Event(type="attempt", message_id=mid, at=T0 + 1),
                                       Event(type="sent", message_id=mid, at=T0 + 1)])

        assert storage.event_counts(T0 - 1, T0 + 2) == {"queued": 1, "sent": 1}
        assert [e.type for e in storage.get_events(mid)] == ["queued", "attempt", "sent"]
        history = storage.history(T0 - 1, T0 + 2, 10.0)
        assert sum(b.events.get("queued", 0) + b.events.get("sent", 0) for b in history) == 2
    finally:
        storage.close()
