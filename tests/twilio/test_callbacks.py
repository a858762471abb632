"""The status-callback route, mounted in a Starlette app and called over httpx, on a real agent."""

from __future__ import annotations

from typing import Any

from otpagent import MessageRequest, Priority, Status
from tests.twilio.conftest import PUBLIC_URL, RECIPIENT, api_config, dispatch
from tests.twilio.fake_twilio import FakeTwilio


def _alert(agent: Any, channels: tuple[str, ...] = ("SMS", "BACKUP")) -> str:
    request = MessageRequest(phone_number=RECIPIENT, message_type="alert", content="Security alert: new login",
                             priority=Priority.HIGH, channels=channels)
    return str(agent.send_message(request))


def _sent(make_agent: Any, **kwargs: Any) -> tuple[Any, str, str]:
    agent = make_agent(**kwargs)
    message_id = _alert(agent)
    report = dispatch(agent, message_id)
    assert report.status is Status.SENT and report.channel == "SMS"
    return agent, message_id, report.provider_message_id


def _events(agent: Any, message_id: str) -> list[str]:
    return [e.type for e in agent.get_delivery_report(message_id).history]


def test_a_signed_delivered_callback_marks_the_message_delivered(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)

    response = callbacks(agent).post(sid, "delivered")

    assert response.status_code == 204
    report = agent.get_delivery_report(message_id)
    assert report.status is Status.DELIVERED
    assert report.attempt_log[-1].delivery_status is Status.DELIVERED


def test_the_callback_url_carries_our_message_id_and_is_signed_over_the_public_url(fake, make_agent) -> None:  # type: ignore[no-untyped-def]
    _agent, message_id, sid = _sent(make_agent)

    url, _ = fake.status_callback(sid, "sent")

    assert url == f"{PUBLIC_URL}/callbacks/twilio/SMS?message_id={message_id}"


def test_a_bad_signature_is_refused_with_403_and_changes_nothing(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)
    before = (agent.get_delivery_report(message_id).status, _events(agent, message_id))
    client = callbacks(agent)

    forged = client.post(sid, "undelivered", token="a-guessed-token")
    missing = client.post(sid, "undelivered", signature="")

    assert forged.status_code == 403 and missing.status_code == 403
    assert (agent.get_delivery_report(message_id).status, _events(agent, message_id)) == before
    assert agent.wait_until_idle(2)
    assert agent.get_delivery_report(message_id).channel == "SMS"  # no fallback was triggered


def test_a_signature_for_another_url_is_refused(fake, make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)
    url, params = fake.status_callback(sid, "delivered")
    signed_elsewhere = fake.sign(url.replace("otp.example", "evil.example"), params)

    response = callbacks(agent).post(sid, "delivered", signature=signed_elsewhere)

    assert response.status_code == 403
    assert agent.get_delivery_report(message_id).status is Status.SENT


def test_a_replayed_callback_is_acknowledged_and_ignored(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)
    client = callbacks(agent)
    token = {"I-Twilio-Idempotency-Token": "0123456789abcdef"}

    first = client.post(sid, "delivered", headers=token)
    replay = client.post(sid, "delivered", headers=token)
    replay_without_token = client.post(sid, "delivered")

    assert [first.status_code, replay.status_code, replay_without_token.status_code] == [204, 204, 204]
    assert _events(agent, message_id).count("delivered") == 1


def test_out_of_order_callbacks_never_move_a_message_backwards(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)
    client = callbacks(agent)

    for status in ("delivered", "sent", "queued", "sending"):
        assert client.post(sid, status).status_code == 204

    report = agent.get_delivery_report(message_id)
    assert report.status is Status.DELIVERED
    assert report.attempt_log[-1].delivery_status is Status.DELIVERED


def test_undelivered_after_sent_falls_back_to_the_next_channel_with_twilios_error(make_agent, callbacks,  # type: ignore[no-untyped-def]
                                                                                  tmp_path) -> None:
    agent, message_id, sid = _sent(make_agent)
    client = callbacks(agent)
    assert client.post(sid, "sent").status_code == 204

    response = client.post(sid, "undelivered", error_code=30003, error_message="Unreachable destination handset")

    assert response.status_code == 204
    assert agent.wait_until_idle(10)
    report = agent.get_delivery_report(message_id)
    assert report.channel == "BACKUP"
    assert [a.channel for a in report.attempt_log] == ["SMS", "BACKUP"]
    assert report.attempt_log[0].delivery_status is Status.UNDELIVERED
    assert "30003" in " ".join(str(e.data) for e in report.history)
    assert "fallback" in [e.type for e in report.history]
    assert (tmp_path / "outbox.jsonl").read_text().count(message_id) == 1


def test_whatsapp_read_receipts_move_past_delivered(fake: FakeTwilio, make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    twilio = {"WHATSAPP": {"plugin": "twilio-whatsapp", "api_config": api_config(fake)}}
    agent = make_agent(twilio=twilio)
    message_id = _alert(agent, ("WHATSAPP",))
    sid = dispatch(agent, message_id).provider_message_id
    client = callbacks(agent)

    statuses = [client.post(sid, s).status_code for s in ("delivered", "read", "delivered")]

    assert statuses == [204, 204, 204]
    assert agent.get_delivery_report(message_id).status is Status.READ


def test_call_outcomes_map_to_delivered_or_fall_back(fake: FakeTwilio, make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    twilio = {"VOICE": {"plugin": "twilio-voice", "api_config": api_config(fake)}}
    agent = make_agent(twilio=twilio)
    answered = _alert(agent, ("VOICE", "BACKUP"))
    unanswered = _alert(agent, ("VOICE", "BACKUP"))
    agent.start_processing()
    assert agent.wait_until_idle(10)
    client = callbacks(agent)
    answered_sid = agent.get_delivery_report(answered).provider_message_id
    unanswered_sid = agent.get_delivery_report(unanswered).provider_message_id
    assert answered_sid.startswith("CA") and unanswered_sid.startswith("CA")

    for status in ("initiated", "ringing", "in-progress", "completed"):
        assert client.post(answered_sid, status).status_code == 204
    assert client.post(unanswered_sid, "ringing").status_code == 204
    assert client.post(unanswered_sid, "no-answer").status_code == 204

    assert agent.wait_until_idle(10)
    assert agent.get_delivery_report(answered).status is Status.DELIVERED
    report = agent.get_delivery_report(unanswered)
    assert report.channel == "BACKUP"
    assert report.attempt_log[0].delivery_status is Status.UNDELIVERED


def test_an_unknown_sid_is_answered_404_after_a_bounded_wait(fake: FakeTwilio, make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    import time

    twilio = {"SMS": {"plugin": "twilio-sms", "api_config": api_config(fake, callback_wait_seconds=0.3)}}
    agent, _message_id, sid = _sent(make_agent, twilio=twilio)
    fake.resources["SM" + "0" * 32] = dict(fake.resources[sid], sid="SM" + "0" * 32)

    started = time.monotonic()
    response = callbacks(agent).post("SM" + "0" * 32, "delivered")

    assert response.status_code == 404
    assert 0.25 <= time.monotonic() - started < 8  # it looked for the sid for its 0.3 s, then answered


def test_callbacks_for_unknown_or_non_twilio_channels_are_404(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, _message_id, _sid = _sent(make_agent)
    client = callbacks(agent).client

    assert client.post("/callbacks/twilio/NOPE?message_id=x", data={"MessageSid": "SMx"}).status_code == 404
    assert client.post("/callbacks/twilio/BACKUP?message_id=x", data={"MessageSid": "SMx"}).status_code == 404


def test_inbound_statuses_are_acknowledged_without_effect(make_agent, callbacks) -> None:  # type: ignore[no-untyped-def]
    agent, message_id, sid = _sent(make_agent)
    before = _events(agent, message_id)

    assert callbacks(agent).post(sid, "received").status_code == 204
    assert _events(agent, message_id) == before


def test_a_delivered_callback_teaches_routing_the_time_to_deliver_and_the_billed_price(make_agent,  # type: ignore[no-untyped-def]
                                                                                        callbacks) -> None:
    agent, message_id, sid = _sent(make_agent)
    accepted_at = agent.get_delivery_report(message_id).attempt_log[-1].finished_at
    seen: list[Any] = []
    agent.planner.observe = seen.append  # what the routing strategy would be told

    assert callbacks(agent).post(sid, "delivered", extra={"Price": "-0.00830", "PriceUnit": "USD"}).status_code == 204

    (outcome,) = seen
    assert outcome.callback and outcome.status is Status.DELIVERED and outcome.channel == "SMS"
    assert outcome.cost == 0.0083, "Twilio writes the charge as a negative amount"
    assert outcome.accepted_at == accepted_at
    assert outcome.time_to_deliver_ms is not None and outcome.time_to_deliver_ms >= 0


def test_a_callback_without_a_price_reports_no_cost_and_an_undelivered_one_no_time_to_deliver(  # type: ignore[no-untyped-def]
        make_agent, callbacks) -> None:
    agent, _message_id, sid = _sent(make_agent)
    seen: list[Any] = []
    agent.planner.observe = seen.append

    assert callbacks(agent).post(sid, "undelivered", error_code=30003, extra={"Price": "n/a"}).status_code == 204

    assert seen[0].status is Status.UNDELIVERED and seen[0].cost == 0.0
    assert seen[0].time_to_deliver_ms is None and seen[0].accepted_at is not None
