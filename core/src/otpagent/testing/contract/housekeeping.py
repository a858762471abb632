"""Contract: stats for metrics, spend per day, and cleanup that removes only finished, old records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from otpagent.model import Event, Outcome, Status
from otpagent.protocols import (
    MAX_HISTORY_BUCKETS,
    STATS_WINDOW_SECONDS,
    AttemptTally,
    Housekeeping,
    MessageUpdate,
    OtpStore,
    StorageBackend,
    total_attempts,
)
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.data import T0, issue, make_attempt, new

__all__ = ["HousekeepingContract"]


class HousekeepingContract(ContractBase):
    """stats for metrics, spend per day, and cleanup that removes only finished, old records."""

    def test_stats_count_statuses_queue_and_channels(self, storage: StorageBackend, housekeeping: Housekeeping) -> None:
        old_due = new(now=T0 - 40)
        storage.enqueue([old_due], T0 - 40)
        storage.enqueue([new(), new(), new(due_at=T0 + 600)], T0)
        sent, sending = storage.claim_due("w1", 2, 30.0, T0)
        storage.update_message(MessageUpdate(message_id=sent.id, status=Status.RETRYING, due_at=T0 + 5), T0,
                               attempt=make_attempt(sent.id, outcome=Outcome.TRANSIENT, latency=0.2))
        storage.update_message(MessageUpdate(message_id=sent.id, status=Status.SENT), T0 + 5,
                               attempt=make_attempt(sent.id, number=2, provider_message_id="SM1", cost=0.0079,
                                                    latency=0.1, now=T0 + 5, delivery_status=Status.DELIVERED))
        storage.update_message(MessageUpdate(message_id=sending.id, status=Status.FAILED), T0 + 5,
                               attempt=make_attempt(sending.id, channel="EMAIL", outcome=Outcome.PERMANENT))
        storage.claim_due("w2", 1, 30.0, T0 + 6)

        stats = housekeeping.stats(T0 + 6)

        assert stats.total == 4
        assert dict(stats.by_status) == {"sent": 1, "failed": 1, "sending": 1, "scheduled": 1}
        assert stats.queue_size == 2
        sms = stats.channels["SMS"]
        assert (sms.attempts, sms.accepted, sms.transient, sms.permanent, sms.delivered) == (2, 1, 1, 0, 1)
        assert sms.cost == pytest.approx(0.0079)
        assert sms.p50_latency_ms is not None
        assert 99.0 <= sms.p50_latency_ms <= 201.0
        assert sms.p95_latency_ms == pytest.approx(200.0, abs=1)
        assert stats.channels["EMAIL"].permanent == 1
        assert stats.oldest_due_age_seconds is None

    def test_channel_stats_cover_only_the_recent_window(self, storage: StorageBackend,
                                                        housekeeping: Housekeeping) -> None:
        old, recent = new(), new()
        storage.enqueue([old, recent], T0)
        for n, (m, at) in enumerate(((old, T0), (recent, T0 + STATS_WINDOW_SECONDS)), start=1):
            storage.update_message(MessageUpdate(message_id=m.message.id, status=Status.SENT), at,
                                   attempt=make_attempt(m.message.id, number=n, now=at, cost=1.0))

        later = housekeeping.stats(T0 + STATS_WINDOW_SECONDS + 10).channels["SMS"]

        assert (later.attempts, later.cost) == (1, 1.0), "the attempt from a day and more ago is out of the window"

    def test_stats_report_how_long_the_oldest_due_message_has_waited(self, storage: StorageBackend,
                                                                     housekeeping: Housekeeping) -> None:
        storage.enqueue([new(now=T0 - 40), new()], T0)

        stats = housekeeping.stats(T0)

        assert (stats.total, stats.queue_size) == (2, 2)
        assert stats.oldest_due_age_seconds == pytest.approx(40.0)
        assert housekeeping.stats(T0).channels == {}

    def test_costs_are_summed_by_channel_and_utc_day(self, storage: StorageBackend, housekeeping: Housekeeping) -> None:
        item = new()
        storage.enqueue([item], T0)
        mid = item.message.id
        day = 86400.0
        for number, (channel, at, cost) in enumerate([
            ("SMS", T0 - 2 * day, 9.0),  # before ``since``
            ("SMS", T0, 0.01), ("SMS", T0 + 60, 0.02), ("EMAIL", T0, 0.001), ("SMS", T0 + day, 0.5),
        ], start=1):
            storage.update_message(MessageUpdate(message_id=mid, status=Status.QUEUED), at,
                                   attempt=make_attempt(mid, number=number, channel=channel, now=at, cost=cost))

        costs = housekeeping.costs_by_day(T0 - day)

        today = datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%d")
        tomorrow = datetime.fromtimestamp(T0 + day, UTC).strftime("%Y-%m-%d")
        assert set(costs) == {"SMS", "EMAIL"}
        assert costs["SMS"] == {today: pytest.approx(0.03), tomorrow: pytest.approx(0.5)}
        assert costs["EMAIL"] == {today: pytest.approx(0.001)}

    # -- fleet activity over a window ----------------------------------------------------------
    def _record(self, storage: StorageBackend, message_id: str, *events: tuple[str, float]) -> None:
        """Record events of the given types at the given times (as the dispatcher would)."""
        for type_, at in events:
            assert storage.update_message(MessageUpdate(message_id=message_id, status=Status.RETRYING), at,
                                          events=[Event(type=type_, message_id=message_id, at=at)])

    def test_events_are_counted_by_type_and_attempts_by_channel_within_the_window(
            self, storage: StorageBackend, housekeeping: Housekeeping) -> None:
        item = new()
        storage.enqueue([item], T0)  # its ``queued`` event, at T0
        mid = item.message.id
        self._record(storage, mid, ("retrying", T0 + 10), ("retrying", T0 + 20), ("fallback", T0 + 30),
                     ("failed", T0 + 100), ("expired", T0 - 1), ("attempt", T0 + 40), ("circuit_opened", T0 + 40))
        for number, (channel, outcome, at, delivery) in enumerate([
            ("SMS", Outcome.TRANSIENT, T0 + 10, None), ("SMS", Outcome.ACCEPTED, T0 + 20, Status.DELIVERED),
            ("EMAIL", Outcome.PERMANENT, T0 + 30, None), ("EMAIL", Outcome.ACCEPTED, T0 + 100, Status.UNDELIVERED),
            ("EMAIL", Outcome.ACCEPTED, T0 + 101, None),
        ], start=1):
            storage.update_message(MessageUpdate(message_id=mid, status=Status.RETRYING), at,
                                   attempt=make_attempt(mid, number=number, channel=channel, outcome=outcome, now=at,
                                                        delivery_status=delivery))

        events = housekeeping.event_counts(T0, T0 + 100)
        attempts = housekeeping.attempt_counts(T0, T0 + 100)

        assert {t: n for t, n in events.items() if n} == {"queued": 1, "retrying": 2, "fallback": 1,
                                                          "failed": 1}, "both ends are inside the window"
        assert "attempt" not in events and "circuit_opened" not in events
        assert attempts["SMS"] == AttemptTally(accepted=1, transient=1, delivered=1)
        assert attempts["EMAIL"] == AttemptTally(accepted=1, permanent=1, undelivered=1)
        assert (total_attempts(attempts.values()).attempts, total_attempts(attempts.values()).failed) == (4, 3)

    def test_a_quiet_window_counts_nothing(self, storage: StorageBackend, housekeeping: Housekeeping) -> None:
        storage.enqueue([new()], T0)

        events = housekeeping.event_counts(T0 + 1, T0 + 3600)
        attempts = housekeeping.attempt_counts(T0 + 1, T0 + 3600)

        assert all(n == 0 for n in events.values())
        assert all(t.attempts == 0 for t in attempts.values())

    def test_history_cuts_the_window_into_equal_buckets_oldest_first(self, storage: StorageBackend,
                                                                     housekeeping: Housekeeping) -> None:
        item = new()
        storage.enqueue([item], T0 + 5)
        mid = item.message.id
        self._record(storage, mid, ("sent", T0 + 59.9), ("failed", T0 + 60), ("fallback", T0 + 150),
                     ("retrying", T0 + 180), ("sent", T0 - 0.5))
        for number, (outcome, at) in enumerate([(Outcome.ACCEPTED, T0 + 1), (Outcome.TRANSIENT, T0 + 61),
                                                (Outcome.ACCEPTED, T0 + 179)], start=1):
            storage.update_message(MessageUpdate(message_id=mid, status=Status.RETRYING), at,
                                   attempt=make_attempt(mid, number=number, outcome=outcome, now=at))

        buckets = housekeeping.history(T0, T0 + 180, 60.0)

        assert [b.start for b in buckets] == [T0, T0 + 60, T0 + 120]
        assert [{t: n for t, n in b.events.items() if n} for b in buckets] == [
            {"queued": 1, "sent": 1}, {"failed": 1}, {"fallback": 1, "retrying": 1}]
        assert [b.attempts for b in buckets] == [AttemptTally(accepted=1), AttemptTally(transient=1),
                                                 AttemptTally(accepted=1)]

    def test_history_of_an_uneven_window_has_a_short_last_bucket(self, storage: StorageBackend,
                                                                  housekeeping: Housekeeping) -> None:
        item = new()
        storage.enqueue([item], T0)
        self._record(storage, item.message.id, ("sent", T0 + 130))

        buckets = housekeeping.history(T0, T0 + 130, 60.0)

        assert len(buckets) == 3
        assert buckets[2].count("sent") == 1 and buckets[0].count("queued") == 1
        assert housekeeping.history(T0, T0, 60.0)[0].count("queued") == 1, "an empty window is one bucket"

    @pytest.mark.parametrize(("since", "now", "bucket"), [
        (T0, T0 + 60, 0.0), (T0, T0 + 60, -1.0), (T0 + 60, T0, 60.0),
        (T0, T0 + 60.0 * (MAX_HISTORY_BUCKETS + 1), 60.0),
    ])
    def test_history_refuses_a_window_it_cannot_cut(self, housekeeping: Housekeeping, since: float, now: float,
                                                    bucket: float) -> None:
        with pytest.raises(ValueError, match=r"bucket|before|at most"):
            housekeeping.history(since, now, bucket)

    def _finish(self, storage: StorageBackend, status: Status, at: float) -> str:
        item = new(now=at)
        storage.enqueue([item], at)
        storage.claim_due("w1", 1, 30.0, at)
        storage.update_message(MessageUpdate(message_id=item.message.id, status=status), at,
                               attempt=make_attempt(item.message.id, now=at,
                                                    provider_message_id=f"p-{item.message.id}"))
        return item.message.id

    def test_cleanup_deletes_only_finished_old_messages_with_their_records(self, storage: StorageBackend,
                                                                           housekeeping: Housekeeping) -> None:
        old_sent = self._finish(storage, Status.SENT, T0)
        old_failed = self._finish(storage, Status.FAILED, T0 + 1)
        recent_sent = self._finish(storage, Status.SENT, T0 + 500)
        old_queued = new(due_at=T0 + 10_000)
        storage.enqueue([old_queued], T0)

        counts = housekeeping.cleanup(T0 + 100, T0 + 1000)

        assert counts["messages"] == 2
        assert counts["delivery_reports"] == 2
        assert counts["events"] >= 2
        for gone in (old_sent, old_failed):
            assert storage.get_message(gone) is None
            assert storage.get_attempts(gone) == []
            assert storage.get_events(gone) == []
        assert storage.find_by_provider_id(f"p-{old_sent}") is None
        assert storage.get_message(recent_sent) is not None
        assert len(storage.get_attempts(recent_sent)) == 1
        assert storage.get_message(old_queued.message.id) is not None
        assert storage.get_events(old_queued.message.id) != []

    def test_cleanup_forgets_expired_otps(self, housekeeping: Housekeeping, otp_store: OtpStore) -> None:
        issue(otp_store, "+447700900123", "123456", ttl=60)
        issue(otp_store, "+447700900456", "654321", ttl=600, now=T0 + 50)

        counts = housekeeping.cleanup(T0 + 100, T0 + 1000)

        assert counts["otps"] == 1

    def test_cleanup_of_an_empty_store_deletes_nothing(self, storage: StorageBackend,
                                                       housekeeping: Housekeeping) -> None:
        counts = housekeeping.cleanup(T0, T0)

        assert all(n == 0 for n in counts.values())
        storage.ping()

