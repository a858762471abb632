"""The signed Event Webhook receiver: verification, the ±300 s window, replays, event mapping.

These tests use a small stand-in for the agent that records ``record_provider_event`` calls; the
end-to-end tests in test_agent_end_to_end.py run the same route against the real agent.
"""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import pytest

from otpagent.model import Attempt, Outcome, Status
from otpagent.protocols import ProviderEvent, ProviderEventOutcome, ProviderEventResult
from tests.sendgrid.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventSigner, event
from tests.sendgrid.webhook_app import post_events

PROVIDER_ID = "W86EgYT6SQKk0lRflfLRsA"
MESSAGE_ID = "msg_01"


@attrs.define
class StubHost:
    """A :class:`~otpagent.protocols.CallbackHost` that records what the endpoint reports."""

    channels: dict[str, Any]
    attempts: list[Attempt]
    applied: list[tuple[str, Status, str | None, str | None]] = attrs.Factory(list)
    seen: set[tuple[str, str]] = attrs.Factory(set)

    def now(self) -> float:
        return time.time()

    def find_attempt(self, provider_message_id: str) -> Attempt | None:
        return next((a for a in self.attempts if a.provider_message_id == provider_message_id), None)

    def attempts_of(self, message_id: str) -> list[Attempt]:
        return [a for a in self.attempts if a.message_id == message_id]

    def record_provider_event(self, event: ProviderEvent) -> ProviderEventResult:
        if (event.source, event.event_id) in self.seen:
            return ProviderEventResult(outcome=ProviderEventOutcome.REPLAY)
        self.seen.add((event.source, event.event_id))
        self.applied.append((event.provider_message_id, event.status, event.error_code, event.error_message))
        return ProviderEventResult(outcome=ProviderEventOutcome.APPLIED, message_updated=True)


@pytest.fixture
def agent(make_channel) -> StubHost:
    attempt = Attempt(message_id=MESSAGE_ID, number=1, channel="EMAIL", outcome=Outcome.ACCEPTED,
                      started_at=time.time(), finished_at=time.time(), provider_message_id=PROVIDER_ID)
    return StubHost(channels={"EMAIL": make_channel()}, attempts=[attempt])


def _ours(kind: str, **extra: Any) -> dict[str, Any]:
    return event(kind, provider_id=PROVIDER_ID, message_id=MESSAGE_ID, **extra)


def test_a_signed_batch_is_applied_in_order_and_answered_200(agent, signer):
    body, headers = signer.request([_ours("processed"), _ours("delivered"), _ours("open")])

    response = post_events(agent, body, headers)

    assert response.status_code == 200
    assert response.json() == {"received": 3, "applied": 3, "unchanged": 0, "duplicates": 0, "ignored": 0}
    assert [(pid, status) for pid, status, _, _ in agent.applied] == [
        (PROVIDER_ID, Status.SENT), (PROVIDER_ID, Status.DELIVERED), (PROVIDER_ID, Status.READ)]


@pytest.mark.parametrize(("kind", "status"), [
    ("processed", Status.SENT), ("deferred", Status.SENT), ("delivered", Status.DELIVERED),
    ("open", Status.READ), ("click", Status.READ), ("bounce", Status.UNDELIVERED), ("dropped", Status.FAILED),
    ("spamreport", Status.DELIVERED), ("unsubscribe", Status.DELIVERED),
])
def test_each_sendgrid_event_maps_onto_our_status(agent, signer, kind, status):
    body, headers = signer.request([_ours(kind)])

    post_events(agent, body, headers)

    assert [s for _, s, _, _ in agent.applied] == [status]


def test_a_bounce_is_recorded_with_its_smtp_status_and_reason(agent, signer):
    bounce = _ours("bounce", type="bounce", status="5.1.1", reason="550 5.1.1 The email account does not exist.")
    body, headers = signer.request([bounce])

    post_events(agent, body, headers)

    [(_, status, code, message)] = agent.applied
    assert (status, code) == (Status.UNDELIVERED, "bounce")
    assert message == "bounced; type=bounce; status=5.1.1; reason=550 5.1.1 The email account does not exist."


def test_a_spam_report_is_noted_without_moving_the_message_back(agent, signer):
    body, headers = signer.request([_ours("spamreport")])

    post_events(agent, body, headers)

    assert agent.applied == [(PROVIDER_ID, Status.DELIVERED, "spamreport", "recipient reported the email as spam")]


def test_a_replayed_batch_is_acknowledged_but_applied_only_once(agent, signer):
    events = [_ours("delivered"), _ours("open")]
    body, headers = signer.request(events)
    post_events(agent, body, headers)

    body, headers = signer.request(events)
    response = post_events(agent, body, headers)

    assert response.status_code == 200
    assert response.json()["duplicates"] == 2
    assert len(agent.applied) == 2


def test_a_signature_from_another_key_is_rejected_with_403(agent):
    body, headers = EventSigner().request([_ours("delivered")])

    response = post_events(agent, body, headers)

    assert response.status_code == 403
    assert agent.applied == []


def test_a_body_changed_after_signing_is_rejected(agent, signer):
    body, headers = signer.request([_ours("delivered")])
    tampered = body.replace(b"delivered", b"bounce")

    response = post_events(agent, tampered, headers)

    assert response.status_code == 403
    assert agent.applied == []


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_a_request_without_signature_headers_is_rejected(agent, signer, missing):
    body, headers = signer.request([_ours("delivered")])
    del headers[missing]

    response = post_events(agent, body, headers)

    assert response.status_code == 403


def test_a_garbled_signature_is_rejected(agent, signer):
    body, headers = signer.request([_ours("delivered")])
    headers[SIGNATURE_HEADER] = "not base64!!"

    assert post_events(agent, body, headers).status_code == 403


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_correctly_signed_but_stale_or_future_timestamp_is_rejected(agent, signer, offset):
    body, headers = signer.request([_ours("delivered")], timestamp=time.time() + offset)

    response = post_events(agent, body, headers)

    assert response.status_code == 403
    assert agent.applied == []


def test_a_timestamp_just_inside_the_window_is_accepted(agent, signer):
    body, headers = signer.request([_ours("delivered")], timestamp=time.time() - 290)

    assert post_events(agent, body, headers).status_code == 200


def test_without_a_configured_public_key_every_request_is_rejected(agent, signer, make_channel):
    agent.channels = {"EMAIL": make_channel(api_config={"webhook_public_key": None})}
    body, headers = signer.request([_ours("delivered")])

    response = post_events(agent, body, headers)

    assert response.status_code == 403
    assert "webhook_public_key" in response.json()["error"]


def test_a_signed_body_that_is_not_an_array_of_events_is_a_400(agent, signer):
    payload = json.dumps({"event": "delivered"}).encode()
    ts = str(int(time.time()))
    headers = {SIGNATURE_HEADER: signer.sign(payload, ts), TIMESTAMP_HEADER: ts}

    assert post_events(agent, payload, headers).status_code == 400


def test_events_for_mail_otpagent_did_not_send_are_ignored(agent, signer):
    foreign = event("delivered", provider_id="SomeoneElse123", message_id=None)
    unknown_kind = _ours("group_resubscribe")
    body, headers = signer.request([foreign, unknown_kind])

    response = post_events(agent, body, headers)

    assert response.json()["ignored"] == 2
    assert agent.applied == []


def test_an_event_without_sg_message_id_is_matched_by_our_custom_arg(agent, signer):
    dropped = event("dropped", provider_id=None, message_id=MESSAGE_ID, reason="Bounced Address")
    body, headers = signer.request([dropped])

    post_events(agent, body, headers)

    assert agent.applied == [(PROVIDER_ID, Status.FAILED, "dropped", "dropped by SendGrid; reason=Bounced Address")]


def test_an_event_whose_custom_arg_contradicts_its_sg_message_id_is_ignored(agent, signer):
    body, headers = signer.request([event("bounce", provider_id=PROVIDER_ID, message_id="msg_other")])

    response = post_events(agent, body, headers)

    assert response.json()["ignored"] == 1
    assert agent.applied == []


def test_an_oversized_batch_is_refused_before_verification(agent, signer):
    body, headers = signer.request([_ours("delivered", padding="x" * (5 * 1024 * 1024))])

    response = post_events(agent, body, headers)

    assert response.status_code == 413
    assert agent.applied == []
