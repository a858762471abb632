"""PostgreSQL specifics beyond the contract: wake-ups, skip-locked claims, flat claim plans,
batched cleanup, and surviving connection loss."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from otpagent.model import Priority, Status
from otpagent.protocols import ACTIVITY_EVENT_TYPES, MessageUpdate, OtpIssueOutcome, OtpVerifyOutcome
from otpagent.storage import sqlreads
from otpagent.testing import T0, make_attempt, new
from otpagent.testing.data import issue, verify
from otpagent_postgres.queue import _CLAIM, _CLAIM_READY_ONLY
from tests.contract.backends import PG_DSN, drop_schema, new_schema_name, postgres_opener
from tests.postgres.conftest import terminate_backends
from tests.postgres.proxy import PgProxy

pytestmark = pytest.mark.postgres


@contextlib.contextmanager
def killing_connections(schema: str, *, every: float) -> Iterator[None]:
    """Terminate the schema's server connections every ``every`` seconds while the block runs."""
    stop = threading.Event()

    def killer() -> None:
        while not stop.wait(every):
            terminate_backends(schema)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc
        out["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_an_idle_worker_wakes_when_another_machine_enqueues(open_store: Any) -> None:
    worker, producer = open_store(), open_store()
    worker.wait_for_work(0.01)  # the first call starts listening

    waiters = [_in_thread(lambda: worker.wait_for_work(10.0)) for _ in range(3)]
    time.sleep(0.2)  # let them block (the test measures the wake-up, not this)
    producer.enqueue([new()], T0)
    for thread, _ in waiters:
        thread.join(5)

    # Woken by the notification, not by the 10 s timeout (any time well short of it says so).
    assert all("error" not in out and out["seconds"] < 8.0 for _, out in waiters)


def test_another_schemas_enqueues_do_not_leave_our_waiters_unheard(open_store: Any, tmp_path: Any) -> None:
    """The notification channel is shared by every schema on the server: a neighbour's enqueue
    must neither end our wait nor leave our own notification with nobody listening."""
    worker, producer = open_store(), open_store()
    neighbour_schema = new_schema_name()
    neighbour = postgres_opener(neighbour_schema, tmp_path)()
    try:
        worker.wait_for_work(0.01)  # the first call starts listening
        waiters = [_in_thread(lambda: worker.wait_for_work(10.0)) for _ in range(3)]
        time.sleep(0.2)  # let them block
        neighbour.enqueue([new()], T0)
        time.sleep(0.3)
        assert all(thread.is_alive() for thread, _ in waiters), "a neighbour's enqueue is not our news"
        producer.enqueue([new()], T0)
        for thread, _ in waiters:
            thread.join(9)
    finally:
        neighbour.close()
        drop_schema(neighbour_schema)

    assert all("error" not in out and out["seconds"] < 8.0 for _, out in waiters)


def test_waiting_for_work_times_out_when_nothing_arrives(open_store: Any) -> None:
    store = open_store()

    started = time.monotonic()
    store.wait_for_work(0.3)

    assert 0.25 <= time.monotonic() - started < 8.0  # it waited its timeout, and no more than a bounded while


def test_waiting_survives_a_terminated_listen_connection(open_store: Any, pg_schema: str) -> None:
    worker, producer = open_store(), open_store()
    worker.wait_for_work(0.01)
    terminate_backends(pg_schema)

    worker.wait_for_work(0.2)  # notices the loss, does not raise
    worker.wait_for_work(0.01)  # listening again
    thread, out = _in_thread(lambda: worker.wait_for_work(10.0))
    time.sleep(0.2)
    producer.enqueue([new()], T0)
    thread.join(5)

    assert "error" not in out
    assert out["seconds"] < 8.0  # woken by the notification, well before its 10 s timeout


def test_a_claim_skips_rows_another_transaction_holds(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    held, free = new(), new()
    store.enqueue([held, free], T0)
    with psycopg.connect(PG_DSN) as other:
        other.execute(f'SELECT 1 FROM "{pg_schema}".messages WHERE id = %s FOR UPDATE', (held.message.id,))

        started = time.monotonic()
        claimed = store.claim_due("w1", 10, 30.0, T0)

        # A claim that waited for the lock would wait for ever (the other transaction stays open).
        assert [m.id for m in claimed] == [free.message.id]
        assert time.monotonic() - started < 8.0


def _claim_plan(conn: psycopg.Connection[Any], claim: bytes, limit: int) -> list[dict[str, Any]]:
    """Every node of the claim's executed plan (run in a transaction rolled back afterwards)."""
    params = {"now": T0, "limit": limit, "owner": "w1", "until": T0 + 30}
    with conn.transaction(force_rollback=True):
        (plan,) = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + claim, params).fetchone()
    nodes, stack = [], [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    return nodes


def test_the_claim_walks_the_ready_index_however_long_the_history(open_store: Any, pg_schema: str) -> None:
    store = open_store()
    store.enqueue([new() for _ in range(20)], T0)
    with psycopg.connect(PG_DSN) as conn:
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute(
            "INSERT INTO messages (id, message_type, priority, body, status, created_at, updated_at, due_at) "
            "SELECT 'old-' || g, 'notification', 2, 'x', 'delivered', %s, %s, %s FROM generate_series(1, 50000) g",
            (T0, T0, T0))
        conn.execute("ANALYZE messages")
        nodes = _claim_plan(conn, _CLAIM_READY_ONLY, 16)

    assert all(n["Node Type"] != "Seq Scan" for n in nodes)
    assert any(n.get("Index Name") == "messages_ready" for n in nodes)


@pytest.mark.parametrize("claim", [_CLAIM, _CLAIM_READY_ONLY], ids=["with-expired", "ready-only"])
def test_a_claim_reads_a_few_rows_of_a_long_backlog_whatever_the_planner_knows(
        open_store: Any, pg_schema: str, claim: bytes) -> None:
    """A burst enqueued before autovacuum analyses the table: asked for every priority at once,
    the planner read the whole backlog (a bitmap scan) and sorted it to keep ``limit`` rows."""
    store = open_store()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute("ALTER TABLE messages SET (autovacuum_enabled = false)")  # statistics stay stale
        store.enqueue([new(priority=[Priority.HIGH, Priority.LOW][i % 2]) for i in range(4000)], T0)
        nodes = _claim_plan(conn, claim, 16)

    on_messages = [n for n in nodes if n.get("Relation Name") == "messages" or n.get("Index Name") == "messages_ready"]
    assert on_messages
    assert max(n["Actual Rows"] for n in on_messages) <= 16, [(n["Node Type"], n["Actual Rows"]) for n in on_messages]
    assert all(n["Node Type"] != "Sort" or n["Actual Rows"] <= 16 for n in nodes)


def test_a_claim_takes_the_highest_priorities_first_and_locks_no_more_rows_than_it_keeps(
        open_store: Any, pg_schema: str) -> None:
    store = open_store()
    items = [new(priority=p, due_at=T0 - i) for i, p in enumerate(
        [Priority.LOW] * 5 + [Priority.MEDIUM] * 3 + [Priority.CRITICAL] * 2 + [Priority.HIGH] * 4)]
    store.enqueue(items, T0)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{pg_schema}"')
        nodes = _claim_plan(conn, _CLAIM_READY_ONLY, 8)

    claimed = store.claim_due("w1", 8, 30.0, T0)

    assert [m.priority for m in claimed] == [Priority.CRITICAL] * 2 + [Priority.HIGH] * 4 + [Priority.MEDIUM] * 2
    medium = sorted((i.message for i in items if i.message.priority is Priority.MEDIUM), key=lambda m: m.due_at)
    assert {m.id for m in claimed if m.priority is Priority.MEDIUM} == {m.id for m in medium[:2]}
    # Each priority's branch locked only the room the higher ones left: 2 + 4 + 2 + 0 rows.
    locked = {n["Subplan Name"]: n["Actual Rows"] for n in nodes if n.get("Subplan Name", "").startswith("CTE ready_")}
    assert locked == {"CTE ready_4": 2, "CTE ready_3": 4, "CTE ready_2": 2, "CTE ready_1": 0}
    assert len(store.claim_due("w2", 10, 30.0, T0)) == len(items) - 8


def test_the_activity_counts_read_the_partial_index_which_covers_every_counted_type(
        open_store: Any, pg_schema: str) -> None:
    open_store()
    with psycopg.connect(PG_DSN) as conn:
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute("INSERT INTO events (message_id, type, at) "
                     "SELECT 'm-' || g, CASE WHEN g %% 100 = 0 THEN 'sent' ELSE 'attempt' END, %s + g "
                     "FROM generate_series(1, 50000) g", (T0,))
        conn.execute("ANALYZE events")
        query = sqlreads.EVENTS_BY_TYPE.replace("?", "%s").encode()
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + query, (T0, T0 + 10)).fetchall())
        definition = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s "
                                  "AND indexname = 'events_activity_at'", (pg_schema,)).fetchone()

    assert "events_activity_at" in plan
    assert "Seq Scan" not in plan
    # A type counted but left out of the index would be counted from a full scan.
    assert definition is not None
    assert all(f"'{t}'" in definition[0] for t in ACTIVITY_EVENT_TYPES)
    assert "'attempt'" not in definition[0]


def test_cleanup_deletes_in_batches(open_store: Any) -> None:
    store = open_store(cleanup_batch_size=7)
    items = [new() for _ in range(30)]
    store.enqueue(items, T0)
    for m in store.claim_due("w1", 30, 30.0, T0):
        store.update_message(MessageUpdate(message_id=m.id, status=Status.SENT), T0,
                             attempt=make_attempt(m.id))

    counts = store.cleanup(T0 + 1, T0 + 2)

    assert (counts["messages"], counts["delivery_reports"]) == (30, 30)
    assert counts["events"] == 30
    assert store.stats(T0 + 2).total == 0


def test_operations_carry_on_after_every_connection_is_terminated(open_store: Any, pg_schema: str) -> None:
    store = open_store(pool_min_size=4)
    store.enqueue([new() for _ in range(5)], T0)

    assert terminate_backends(pg_schema) >= 1
    claimed = store.claim_due("w1", 5, 30.0, T0)
    applied = [store.update_message(MessageUpdate(message_id=m.id, status=Status.SENT, expected_owner="w1"), T0)
               for m in claimed]

    assert len(claimed) == 5
    assert all(applied)


def test_nothing_is_lost_or_doubled_while_connections_keep_being_killed(open_store: Any, pg_schema: str) -> None:
    store = open_store(pool_min_size=2, pool_max_size=4)
    with killing_connections(pg_schema, every=0.05):
        ids = []
        for _ in range(40):
            items = [new() for _ in range(5)]
            store.enqueue(items, T0)
            ids += [i.message.id for i in items]
        claimed: list[str] = []
        for _ in range(400):
            got = store.claim_due("w1", 7, 300.0, T0)
            for m in got:
                assert store.update_message(MessageUpdate(message_id=m.id, status=Status.SENT, expected_owner="w1"),
                                            T0, attempt=make_attempt(m.id))
            claimed += [m.id for m in got]
            if len(claimed) >= len(ids):
                break

    assert sorted(claimed) == sorted(ids)
    stats = store.stats(T0)
    assert dict(stats.by_status) == {"sent": 200}
    assert stats.channels["SMS"].attempts == 200


def test_otps_are_issued_and_checked_once_while_connections_keep_being_killed(open_store: Any,
                                                                              pg_schema: str) -> None:
    """Issue and verify run pipelined (the client waits twice): a connection lost with the
    writes and the COMMIT in flight is retried as an uncertain commit, never doubled, and a
    right code whose consumption landed is still answered VERIFIED."""
    store = open_store(pool_min_size=2, pool_max_size=4)
    numbers = [f"+4477009{i:05d}" for i in range(60)]
    with killing_connections(pg_schema, every=0.02):
        issued = [issue(store, number, "123456", now=T0, cooldown=0)[0] for number in numbers]
        checks = [verify(store, number, "123456", now=T0 + 1) for number in numbers]

    assert issued == [OtpIssueOutcome.ISSUED] * len(numbers)
    assert checks == [OtpVerifyOutcome.VERIFIED] * len(numbers), "a dropped connection never turns a right code away"
    with psycopg.connect(PG_DSN, options=f"-c search_path={pg_schema}") as conn:
        otps, consumed = conn.execute("SELECT count(*), count(consumed_at) FROM otps").fetchone()  # type: ignore[misc]
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]  # type: ignore[index]
    assert (otps, consumed, messages) == (len(numbers), len(numbers), len(numbers))


def test_a_right_code_checked_again_after_an_uncertain_commit_is_still_verified(open_store: Any) -> None:
    from otpagent.testing.data import code_hash
    from otpagent_postgres import otp as otp_sql

    store = open_store()
    issue(store, "+447700900123", "123456", now=T0)

    def check_after_uncertain_commit(code: str, now: float) -> OtpVerifyOutcome:
        """What Database.run does when the first COMMIT's outcome was unknown."""
        return store._db.run(lambda conn, _u: otp_sql.verify_otp(
            conn, store.schema, "+447700900123", "login", code_hash("+447700900123", code), max_attempts=5, now=now,
            uncertain=True), pipelined=True)

    wrong_retried = check_after_uncertain_commit("000000", T0 + 1)  # counts as any wrong guess
    not_committed = check_after_uncertain_commit("123456", T0 + 2)  # the first try never landed: verify now
    committed = check_after_uncertain_commit("123456", T0 + 2)  # it landed: answer what it answered
    wrong_at_same_time = check_after_uncertain_commit("999999", T0 + 2)
    later = verify(store, "+447700900123", "123456", now=T0 + 3)

    assert (wrong_retried, not_committed, committed) == (OtpVerifyOutcome.INVALID, OtpVerifyOutcome.VERIFIED,
                                                         OtpVerifyOutcome.VERIFIED)
    assert wrong_at_same_time is OtpVerifyOutcome.NO_LIVE_CODE, "only the consumed code's own hash is re-answered"
    assert later is OtpVerifyOutcome.NO_LIVE_CODE, "the code was consumed once"


@pytest.fixture
def proxy() -> Iterator[PgProxy]:
    p = PgProxy()
    yield p
    p.close()


def test_a_write_during_a_database_outage_lands_when_it_returns(open_store: Any, proxy: PgProxy) -> None:
    store = open_store(dsn=proxy.dsn(), connect_timeout_seconds=1, retry_seconds=30)
    item = new()
    store.enqueue([item], T0)
    (claimed,) = store.claim_due("w1", 1, 300.0, T0)

    proxy.outage()
    thread, out = _in_thread(lambda: store.update_message(
        MessageUpdate(message_id=claimed.id, status=Status.SENT, expected_owner="w1"), T0,
        attempt=make_attempt(claimed.id, provider_message_id="SM-outage")))
    time.sleep(1.5)  # the database stays away this long
    still_waiting = thread.is_alive()
    proxy.restore()
    thread.join(30)

    assert still_waiting
    assert out.get("result") is True, out
    assert store.get_message(item.message.id).status is Status.SENT
    assert len(store.get_attempts(item.message.id)) == 1


def test_a_provider_event_retried_after_an_uncertain_commit_reports_what_the_first_try_did(open_store: Any) -> None:
    from otpagent.model import Event
    from otpagent.protocols import ProviderEvent, ProviderEventOutcome, ProviderEventResult
    from otpagent.storage import sqlrules
    from otpagent_postgres.connection import PgTx

    store = open_store()
    item = new()
    store.enqueue([item], T0)
    mid = item.message.id
    store.update_message(MessageUpdate(message_id=mid, status=Status.SENT, provider_message_id="SM1"), T0,
                         attempt=make_attempt(mid, provider_message_id="SM1"))
    event = ProviderEvent(source="twilio", event_id="e1", provider_message_id="SM1", status=Status.DELIVERED)
    update = MessageUpdate(message_id=mid, status=Status.DELIVERED, expected_statuses=frozenset({Status.SENT}))
    allowed: frozenset[Status | None] = frozenset({None, Status.SENT})
    events = [Event(type="delivered", message_id=mid, at=T0 + 5)]

    def retry_after_uncertain_commit(now: float) -> ProviderEventResult:
        """What Database.run does when the first COMMIT's outcome was unknown."""
        return store._db.run(lambda conn, _u: sqlrules.apply_provider_event(
            PgTx(conn), event, allowed_from=allowed, update=update, events=events, now=now, lock=" FOR UPDATE",
            uncertain=True))

    not_committed = retry_after_uncertain_commit(T0 + 5)  # the first try never landed: apply now
    committed = retry_after_uncertain_commit(T0 + 5)  # it landed: report it, do not redo it
    provider_retry = store.apply_provider_event(event, allowed_from=allowed, update=update, events=events,
                                                now=T0 + 60)

    assert not_committed == committed == ProviderEventResult(outcome=ProviderEventOutcome.APPLIED,
                                                             message_updated=True)
    assert provider_retry.outcome is ProviderEventOutcome.REPLAY
    assert [e.type for e in store.get_events(mid)].count("delivered") == 1


@pytest.mark.parametrize("claim", [_CLAIM, _CLAIM_READY_ONLY], ids=["with-expired", "ready-only"])
def test_a_claim_commits_without_waiting_for_the_wal_flush_and_leaves_the_session_alone(
        open_store: Any, pg_schema: str, claim: bytes) -> None:
    """``synchronous_commit`` is off for the claim's own transaction only: a claim lost to a
    server crash is claimed again, as a dead worker's is; everything else keeps the flush."""
    store = open_store()
    store.enqueue([new(), new()], T0)
    params = {"now": T0, "limit": 1, "owner": "w1", "until": T0 + 30}
    with psycopg.connect(PG_DSN, autocommit=True) as conn:  # as the store's claims run
        conn.execute(f'SET search_path TO "{pg_schema}"')
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        with conn.transaction():  # the claim's transaction, opened here to look inside it
            assert len(conn.execute(claim, params).fetchall()) == 1
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",), "the session keeps its setting"

    assert len(store.claim_due("w2", 10, 30.0, T0)) == 1, "the committed claim stood"
