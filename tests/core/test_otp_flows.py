"""The OTP policy end to end through the Python API and the console channel."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from otpagent import InvalidRequest, LimitsRefused, RateLimited, Status
from tests.conftest import FakeClock, wait_for

PHONE = "+447700900123"


def test_otp_is_sent_and_the_right_code_verifies_exactly_once(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    message_id = agent.send_otp(PHONE, user_id="user123")
    code = outbox.code_for(message_id)

    assert len(code) == 6
    assert agent.verify_otp(PHONE, code) == (True, "verified")
    assert agent.verify_otp(PHONE, code) == (False, "invalid")


def test_wrong_code_fails_and_unknown_number_gets_the_same_answer(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    code = outbox.code_for(agent.send_otp(PHONE))
    wrong = "000000" if code != "000000" else "111111"

    assert agent.verify_otp(PHONE, wrong) == (False, "invalid")
    assert agent.verify_otp("+447700900999", code) == (False, "invalid")
    assert agent.verify_otp("not a number", code) == (False, "invalid")


def test_wrong_guesses_kill_the_live_code_and_a_new_code_comes_within_the_resend_limits(make_agent, outbox):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"max_attempts": 3, "resend_cooldown_seconds": 30})
    agent.start_processing()
    first = outbox.code_for(agent.send_otp(PHONE))
    wrong = "999999" if first != "999999" else "888888"

    assert agent.verify_otp(PHONE, wrong) == (False, "invalid")
    assert agent.verify_otp(PHONE, wrong) == (False, "invalid")
    assert agent.verify_otp(PHONE, wrong) == (False, "too_many_attempts")
    assert agent.verify_otp(PHONE, first) == (False, "invalid"), "the dead code never verifies (and says no more)"
    with pytest.raises(RateLimited, match="cooldown"):
        agent.send_otp(PHONE)
    clock.advance(31)
    second = outbox.code_for(agent.send_otp(PHONE))
    assert agent.verify_otp(PHONE, wrong if wrong != second else "777777") == (False, "invalid")
    assert agent.verify_otp(PHONE, second) == (True, "verified"), "a new code comes with its own attempts"


def test_a_strangers_100_wrong_guesses_do_not_stop_the_owner_verifying_the_code_sent_next(make_agent, outbox):
    """The finding: failures counted per recipient, even with no code live, so anyone able to
    call verify could lock a number out for 15 minutes, again and again."""
    agent = make_agent()
    agent.start_processing()
    stranger = [agent.verify_otp(PHONE, f"{i:06d}") for i in range(100)]

    code = outbox.code_for(agent.send_otp(PHONE))

    assert set(stranger) == {(False, "invalid")}
    assert agent.verify_otp(PHONE, code) == (True, "verified")


def test_the_global_failure_rate_refuses_guesses_without_evaluating_them(make_agent, outbox):
    clock = FakeClock()
    # 4 failures a minute, burst 1: after one failure the next token comes 15 s later.
    agent = make_agent(clock=clock, otp={"global_failures_per_minute": 4, "max_attempts": 2})
    agent.start_processing()
    alice = outbox.code_for(agent.send_otp(PHONE))
    bob = outbox.code_for(agent.send_otp("+447700900124"))
    wrong_for = {code: "000000" if code != "000000" else "111111" for code in (alice, bob)}

    assert agent.verify_otp(PHONE, wrong_for[alice]) == (False, "invalid")
    with pytest.raises(RateLimited, match="failed OTP verifications") as refused:
        agent.verify_otp("+447700900124", wrong_for[bob])
    assert 14 < refused.value.retry_after <= 15
    with pytest.raises(RateLimited):
        agent.verify_otp("+447700900124", bob)  # the right code waits too: nothing is compared
    clock.advance(15)
    assert agent.verify_otp("+447700900124", wrong_for[bob]) == (False, "invalid"), \
        "the refused guesses were not counted against Bob's code (max_attempts is 2)"
    clock.advance(15)
    assert agent.verify_otp("+447700900124", bob) == (True, "verified")


def test_guesses_at_numbers_without_a_live_code_do_not_spend_the_global_failure_rate(make_agent, outbox):
    agent = make_agent(otp={"global_failures_per_minute": 4})
    agent.start_processing()
    strangers = [agent.verify_otp(f"+4477009002{i:02d}", "000000") for i in range(50)]
    code = outbox.code_for(agent.send_otp(PHONE))

    assert set(strangers) == {(False, "invalid")}
    assert agent.verify_otp(PHONE, code) == (True, "verified")


def test_code_expires_after_its_lifetime(make_agent, outbox):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"ttl_seconds": 60})
    agent.start_processing()
    code = outbox.code_for(agent.send_otp(PHONE))

    clock.advance(61)

    assert agent.verify_otp(PHONE, code) == (False, "expired")
    assert agent.verify_otp(PHONE, "12" + code[2:] if code[:2] != "12" else "34" + code[2:]) == (False, "invalid")


def test_a_new_code_invalidates_the_old_one(make_agent, outbox):
    clock = FakeClock()
    agent = make_agent(clock=clock)
    agent.start_processing()
    old = outbox.code_for(agent.send_otp(PHONE))
    clock.advance(31)
    new = outbox.code_for(agent.send_otp(PHONE))

    if old != new:
        assert agent.verify_otp(PHONE, old) == (False, "invalid")
    assert agent.verify_otp(PHONE, new) == (True, "verified")


def test_resend_cooldown_and_hourly_cap_are_enforced(make_agent):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"resend_cooldown_seconds": 30, "max_per_hour": 3})
    agent.send_otp(PHONE)
    with pytest.raises(RateLimited) as cooldown:
        agent.send_otp(PHONE)
    assert 29 <= cooldown.value.retry_after <= 30
    for _ in range(2):
        clock.advance(31)
        agent.send_otp(PHONE)
    clock.advance(31)
    with pytest.raises(RateLimited, match="this hour"):
        agent.send_otp(PHONE)


def test_country_allow_list_denies_other_countries(make_agent):
    agent = make_agent(otp={"allowed_countries": ["GB"]})
    agent.send_otp(PHONE)
    with pytest.raises(InvalidRequest, match="not allowed"):
        agent.send_otp("+12025550123")


def test_code_is_never_stored_in_clear_after_delivery(make_agent, outbox, tmp_path: Path):
    agent = make_agent()
    agent.start_processing()
    message_id = agent.send_otp(PHONE)
    code = outbox.code_for(message_id)
    assert wait_for(lambda: agent.get_delivery_report(message_id).status is Status.SENT)
    agent.verify_otp(PHONE, code)
    agent.stop_processing()

    report = agent.get_delivery_report(message_id)
    assert code not in report.body and "••••••" in report.body
    with sqlite3.connect(tmp_path / "otpagent.db") as db:
        rows = db.execute("SELECT secret, body FROM messages").fetchall()
        assert all(code not in (body or "") for _secret, body in rows)
        otp_rows = db.execute("SELECT code_hash FROM otps").fetchall()
        assert all(code.encode() not in bytes(h) for (h,) in otp_rows)


def test_secret_is_redacted_once_the_code_expires(make_agent, outbox, tmp_path: Path):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"ttl_seconds": 60})
    agent.start_processing()
    message_id = agent.send_otp(PHONE)
    outbox.code_for(message_id)
    clock.advance(61)

    assert agent.storage.redact_expired_secrets(clock()) == 1
    assert agent.storage.get_message(message_id).secret is None


def test_two_concurrent_correct_verifies_have_exactly_one_winner(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    code = outbox.code_for(agent.send_otp(PHONE))
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def verify() -> None:
        barrier.wait()
        results.append(agent.verify_otp(PHONE, code)[0])

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert results.count(True) == 1 and len(results) == 8


def test_otp_by_email_goes_to_the_email_channel(make_agent, outbox):
    agent = make_agent()
    agent.start_processing()
    message_id = agent.send_otp(email="Ada@Example.com")
    code = outbox.code_for(message_id)

    assert outbox.for_message(message_id)[0]["kind"] == "email"
    assert agent.verify_otp("ada@example.com", code) == (True, "verified")


def test_voice_otp_is_off_unless_enabled(make_agent, outbox):
    agent = make_agent(channels={"voice": {"plugin": "console", "kind": "voice", "quiet": True}})
    with pytest.raises(InvalidRequest, match="voice OTPs are off"):
        agent.send_otp(PHONE)


def test_locale_picks_the_otp_template_by_tag_then_language(make_agent, outbox):
    agent = make_agent(otp={"messages": {"fr": "Votre code est {code}. Il expire dans {minutes} minutes.",
                                         "pt-BR": "Seu código é {code}."}})
    agent.start_processing()
    fr = agent.send_otp(PHONE, locale="fr-CA")
    br = agent.send_otp("+447700900124", locale="pt-BR")
    en = agent.send_otp("+447700900125", locale="de")
    assert agent.wait_until_idle(10)

    assert outbox.for_message(fr)[0]["body"].startswith("Votre code est ")
    assert outbox.for_message(br)[0]["body"].startswith("Seu código é ")
    assert outbox.for_message(en)[0]["body"].startswith("Your verification code is ")


def test_otp_templates_must_hold_the_code_placeholder(make_agent):
    from otpagent import ConfigError

    with pytest.raises(ConfigError) as exc:
        make_agent(otp={"messages": {"fr": "Bonjour"}})
    assert exc.value.path == "otp.messages.fr"


# -- the caller's own rate limits, taken by the same write as the code (``buckets=``) ---------
def test_an_otp_and_its_buckets_are_one_storage_write(make_agent, monkeypatch):
    """The promise that makes the HTTP API's abuse limits cheap on SQLite: a request waits for
    one commit, not one for its limits and another for its code."""
    agent = make_agent(otp={"fraud_guard": {"enabled": False}, "global_failures_per_minute": None})
    writes = []
    grouped = agent.storage._grouped
    monkeypatch.setattr(agent.storage, "_grouped", lambda work, **how: writes.append(work) or grouped(work, **how))

    message_id = agent.send_otp(PHONE, buckets=[("app:user:42", 60.0, 3), ("app:ip:10.0.0.1", 1.0, 5)])
    issue_writes = len(writes)
    ok, _ = agent.verify_otp(PHONE, "000000", buckets=[("app:verify:42", 1.0, 5)])
    all_writes = len(writes)  # (a read below first moves the queued message out of intake: a write)

    assert agent.storage.get_message(message_id) is not None
    assert (issue_writes, all_writes, ok) == (1, 2, False)


def test_a_refused_bucket_issues_nothing_and_names_itself(make_agent):
    clock = FakeClock()
    agent = make_agent(clock=clock)
    agent.send_otp(PHONE, buckets=[("app:user:42", 60.0, 1)])

    with pytest.raises(LimitsRefused) as refused:
        agent.send_otp("+447700900456", buckets=[("app:other", 60.0, 5), ("app:user:42", 60.0, 1)])

    assert isinstance(refused.value, RateLimited)
    assert refused.value.reason == "rate limit app:user:42"
    assert refused.value.retry_after == pytest.approx(60.0)
    assert agent.get_metrics()["database_stats"]["total_messages"] == 1, "nothing was issued or queued"


def test_a_guess_at_an_unparseable_recipient_still_takes_its_buckets(make_agent):
    agent = make_agent(clock=FakeClock())

    first = agent.verify_otp("not a number", "123456", buckets=[("app:verify", 60.0, 1)])
    with pytest.raises(LimitsRefused):
        agent.verify_otp("not a number either", "123456", buckets=[("app:verify", 60.0, 1)])

    assert first == (False, "invalid")


@pytest.mark.parametrize(("buckets", "field", "reason"), [
    ([("k", 1.0)], "buckets[0]", "(key, interval, burst)"),
    ([("", 1.0, 1)], "buckets[0]", "key must be a non-empty string"),
    ([("k", -1.0, 1)], "buckets[0]", "interval must be seconds >= 0"),
    ([("k", 1.0, 0)], "buckets[0]", "burst must be an integer >= 1"),
    ([("k", 1.0, 1), ("k", 2.0, 1)], "buckets[1]", "given twice"),
    ("k", "buckets", "must be a list"),
])
def test_bad_buckets_are_refused_naming_the_entry(make_agent, buckets, field, reason):
    agent = make_agent()

    with pytest.raises(InvalidRequest) as bad:
        agent.send_otp(PHONE, buckets=buckets)

    assert [(e.field, reason in e.reason) for e in bad.value.errors] == [(field, True)]
    assert agent.get_metrics()["database_stats"]["total_messages"] == 0
