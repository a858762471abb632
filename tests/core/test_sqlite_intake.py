"""SQLite's intake: a lone enqueue writes one row, and nothing outside the backend can tell.

The row becomes a message (with its ``queued`` event at the enqueue's time) when a claim, a
read or an update needs it (``otpagent.storage.sqlite_intake``); these tests read the file
behind the backend's back to see where a message is, and through the backend to see that it
never matters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from otpagent import IntelligentOTPAgent, MessageRequest, Status
from otpagent.model import MessageType, Priority
from otpagent.protocols import NewMessage, OtpIssueOutcome, OtpRecord, OtpVerifyOutcome
from otpagent.storage import sqlite_intake
from otpagent.storage.rows import MESSAGE_COLUMNS, message_values
from otpagent.storage.sqlite import SqliteStorage
from otpagent.storage.sqlite_schema import migrate
from otpagent.storage.sqlite_wakeup import DataVersionWatch
from otpagent.testing.data import T0, issue, make_message, new, verify
from tests.conftest import agent_config


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "q.db")
    try:
        yield store
    finally:
        store.close()


def test_a_lone_enqueue_is_one_intake_row_yet_every_read_finds_the_message(tmp_path: Path) -> None:
    db = tmp_path / "otpagent.db"
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        message_id = agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))
        assert (_count(db, "intake"), _count(db, "messages"), _count(db, "events")) == (1, 0, 0)

        other = SqliteStorage(db)  # another process's view: it moves the row as it reads
        try:
            seen = other.get_message(message_id)
        finally:
            other.close()
        report = agent.get_delivery_report(message_id)

    assert seen is not None and seen.status is Status.QUEUED and seen.body == "hi"
    assert report is not None and report.status is Status.QUEUED
    assert [e.type for e in report.history] == ["queued"]
    assert report.history[0].at == seen.created_at  # the event keeps the enqueue's time
    assert (_count(db, "intake"), _count(db, "messages"), _count(db, "events")) == (0, 1, 1)


def test_batches_keyed_messages_and_otps_are_written_to_messages_directly(storage: SqliteStorage) -> None:
    storage.enqueue([new(), new()], T0)
    storage.enqueue([new(idempotency_key="k1")], T0)
    storage.enqueue([new(secret="enc1:sealed")], T0)

    assert _count(storage.path, "intake") == 0 and _count(storage.path, "messages") == 4


def test_an_issued_code_queues_its_message_as_one_intake_row(storage: SqliteStorage) -> None:
    """The code, in ``otps``, is there at once (verification reads only that); its message waits
    in intake, sealed code and all, until a claim or a read moves it."""
    outcome, _, message = issue(storage, "+447700900123", "123456", now=T0)

    assert outcome is OtpIssueOutcome.ISSUED
    assert [_count(storage.path, t) for t in ("intake", "messages", "events", "otps")] == [1, 0, 0, 1]
    assert verify(storage, "+447700900123", "123456", now=T0 + 1) is OtpVerifyOutcome.VERIFIED
    claimed = storage.claim_due("w1", 10, 30.0, T0 + 2)
    assert [(m.id, m.secret, m.message_type) for m in claimed] == [(message.id, "123456", MessageType.OTP)]
    assert [e.type for e in storage.get_events(message.id)] == ["queued"]


def test_a_keyed_message_issued_with_a_code_is_written_to_messages(storage: SqliteStorage) -> None:
    message = make_message(message_type=MessageType.OTP, secret="enc1:x", idempotency_key="k1", now=T0)
    otp = OtpRecord(id="otp1", recipient=message.phone_number or "", purpose="login", code_hash=b"h",
                    created_at=T0, expires_at=T0 + 300, message_id=message.id)
    storage.issue_otp(otp, NewMessage(message=message, fingerprint="f"), cooldown_seconds=0, max_per_hour=5, now=T0)

    assert (_count(storage.path, "intake"), _count(storage.path, "messages")) == (0, 1)


def test_an_expired_code_still_in_intake_is_redacted_on_time(storage: SqliteStorage) -> None:
    """With no worker running nothing moves the row: the redaction moves it first."""
    _, _, message = issue(storage, "+447700900123", "123456", now=T0, ttl=60.0)

    assert storage.redact_expired_secrets(T0 + 61) == 1
    assert _count(storage.path, "intake") == 0
    stored = storage.get_message(message.id)
    assert stored is not None and stored.secret is None


def test_a_claim_moves_the_rows_first_so_priority_holds(storage: SqliteStorage) -> None:
    low, high = new(priority=Priority.LOW), new(priority=Priority.HIGH, now=T0 + 1)
    storage.enqueue([low], T0)
    storage.enqueue([high], T0 + 1)

    claimed = storage.claim_due("w1", 1, 30.0, T0 + 2)

    assert [m.id for m in claimed] == [high.message.id]
    assert _count(storage.path, "intake") == 0
    assert [m.id for m in storage.claim_due("w1", 5, 30.0, T0 + 2)] == [low.message.id]


def test_a_backlog_moves_a_batch_a_claim_and_whole_for_a_read(storage: SqliteStorage,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_intake, "ABSORB_BATCH", 3)
    items = [new(now=T0 + i) for i in range(7)]
    for i, item in enumerate(items):
        storage.enqueue([item], T0 + i)

    first = storage.claim_due("w1", 100, 30.0, T0 + 10)
    assert [m.id for m in first] == [i.message.id for i in items[:3]]
    assert _count(storage.path, "intake") == 4

    assert storage.get_message(items[6].message.id) is not None  # a read moves them all
    assert _count(storage.path, "intake") == 0
    assert [m.id for m in storage.claim_due("w1", 100, 30.0, T0 + 10)] == [i.message.id for i in items[3:]]


def test_a_cancel_finds_a_message_still_in_intake(tmp_path: Path) -> None:
    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        message_id = agent.send_message(MessageRequest(phone_number="+447700900123", content="hi"))
        assert _count(tmp_path / "otpagent.db", "intake") == 1

        assert agent.cancel_message(message_id) is True
        report = agent.get_delivery_report(message_id)

    assert report is not None and report.status is Status.CANCELLED
    assert [e.type for e in report.history] == ["queued", "cancelled"]


def test_the_webhook_outbox_delivers_the_queued_event_of_a_lone_enqueue(storage: SqliteStorage) -> None:
    outbox = storage.webhook_outbox()
    outbox.ensure_endpoint("hook", T0)
    item = new()
    storage.enqueue([item], T0)
    assert _count(storage.path, "intake") == 1

    assert outbox.pull("hook", None, T0 + 1) == 1
    [delivery] = outbox.list(endpoint="hook")

    assert delivery.event_type == "queued" and delivery.payload["data"]["message_id"] == item.message.id


def test_an_idle_worker_in_another_process_sees_a_lone_enqueue(storage: SqliteStorage, tmp_path: Path) -> None:
    """The wake-up compares the newest message and the newest intake row: a row that stays in
    intake still wakes a worker (whose claim then moves it)."""
    other = sqlite3.connect(storage.path)
    try:
        before = DataVersionWatch._newest(other)
        storage.enqueue([new()], T0)
        assert DataVersionWatch._newest(other) != before
    finally:
        other.close()


def test_stats_and_activity_count_what_waits_in_intake(storage: SqliteStorage) -> None:
    storage.enqueue([new()], T0)
    storage.enqueue([new(now=T0 + 1)], T0 + 1)

    assert storage.stats(T0 + 2).by_status.get(Status.QUEUED) == 2
    assert storage.event_counts(T0 - 1, T0 + 2).get("queued") == 2


def test_a_row_written_before_a_column_existed_moves_with_its_default(storage: SqliteStorage) -> None:
    item = new(trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    row = json.loads(sqlite_intake.intake_row(item, T0))
    del row["trace_context"]  # as if written by a version before the column was added
    with storage.transaction() as conn:
        conn.execute(sqlite_intake.INSERT_INTAKE, (json.dumps(row),))

    moved = storage.get_message(item.message.id)

    assert moved is not None and moved.trace_context is None


def _stored_row(path: Path, message_id: str) -> tuple[object, ...]:
    with sqlite3.connect(path) as conn:
        return tuple(conn.execute(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE id = ?",
                                  (message_id,)).fetchone())


def _stored_directly(tmp_path: Path, item: NewMessage) -> tuple[object, ...]:
    """The row an enqueue that bypasses intake (a batch) stores for ``item``."""
    direct = SqliteStorage(tmp_path / "direct.db")
    try:
        direct.enqueue([item, new(now=T0 + 5)], T0)  # two messages: written straight to messages
    finally:
        direct.close()
    return _stored_row(tmp_path / "direct.db", item.message.id)


@pytest.mark.parametrize("kind", ["new", "every column set"])
def test_a_row_leaves_out_default_values_and_moves_to_the_row_a_direct_enqueue_stores(
        tmp_path: Path, kind: str) -> None:
    fields: dict[str, object] = {} if kind == "new" else {
        "subject": "s", "email": "a@example.com", "user_id": "u", "channels": ("SMS",), "preferred_channel": "SMS",
        "max_retries": 2, "callback_url": "https://example.com/cb", "metadata": {"k": "v"}, "expires_at": T0 + 60,
        "route": ("SMS", "EMAIL"), "route_index": 1, "channel_attempts": 2, "attempt_count": 3, "channel": "EMAIL",
        "provider_message_id": "SM1", "last_error": "e", "cost": 0.25, "lease_owner": "w", "lease_expires_at": T0 + 9,
        "trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
    item = new(**fields)
    row = json.loads(sqlite_intake.intake_row(item, T0))
    storage = SqliteStorage(tmp_path / "q.db")
    try:
        storage.enqueue([item], T0)
        assert _count(storage.path, "intake") == 1
        storage.settle_intake()
    finally:
        storage.close()

    if kind == "new":  # NULL and zero columns are not written out: what a new message has is
        assert set(row) == {"id", "message_type", "priority", "body", "phone_number", "status", "created_at",
                            "updated_at", "due_at", "_event"}
    else:
        assert set(row) == {*MESSAGE_COLUMNS, "_event"} - {"idempotency_key", "fingerprint", "secret"}
    assert _stored_row(tmp_path / "q.db", item.message.id) == _stored_directly(tmp_path, item)


def test_the_defaults_a_row_leaves_out_are_the_schemas(storage: SqliteStorage) -> None:
    with sqlite3.connect(storage.path) as conn:
        columns = {name: (not_null, default) for _, name, _, not_null, default, _ in
                   conn.execute("PRAGMA table_info(messages)")}

    declared = {name: json.loads(default.replace("'", '"')) for name, (_, default) in columns.items()
                if default is not None}
    assert declared == sqlite_intake.NON_NULL_DEFAULTS
    # A value left out because it is None must come back as None: a nullable column without a default.
    assert all(default is None for name, (not_null, default) in columns.items() if not not_null)


def test_a_row_naming_an_unknown_column_is_refused_by_name(storage: SqliteStorage) -> None:
    row = json.loads(sqlite_intake.intake_row(new(), T0))
    row["colour"] = "blue"
    with storage.transaction() as conn:
        conn.execute(sqlite_intake.INSERT_INTAKE, (json.dumps(row),))

    with pytest.raises(RuntimeError, match=r"unknown message columns \['colour'\]"):
        storage.get_message("msg_anything")
    assert _count(storage.path, "intake") == 1  # nothing half moved



def test_the_same_message_enqueued_twice_never_stops_the_claims(storage: SqliteStorage) -> None:
    item = new()
    storage.enqueue([item], T0)
    storage.enqueue([item], T0 + 1)  # a caller's retry of the very same message
    later = new(now=T0 + 2)
    storage.enqueue([later], T0 + 2)

    claimed = storage.claim_due("w1", 10, 30.0, T0 + 3)

    assert [m.id for m in claimed] == [item.message.id, later.message.id]
    assert _count(storage.path, "intake") == 0
    assert [e.type for e in storage.get_events(item.message.id)] == ["queued"]


def test_a_database_from_before_intake_is_upgraded_and_its_queue_carries_on(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, up_to=7)
    old = new()
    placeholders = ", ".join("?" * len(MESSAGE_COLUMNS))
    conn.execute(f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES ({placeholders})",
                 message_values(old.message, None))
    conn.close()

    storage = SqliteStorage(path)
    try:
        fresh = new(now=T0 + 1)
        storage.enqueue([fresh], T0 + 1)
        assert _count(path, "intake") == 1

        claimed = storage.claim_due("w1", 10, 30.0, T0 + 2)
    finally:
        storage.close()

    assert [m.id for m in claimed] == [old.message.id, fresh.message.id]
