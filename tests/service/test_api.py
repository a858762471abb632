"""The REST API end to end over real HTTP: auth, OTP send/verify, messages, errors, probes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import Outbox, wait_for
from tests.service.conftest import OTHER_KEY, LiveServer

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key-0000000000000"},
    {"Authorization": "Basic dGVzdDp0ZXN0"},
    {"Authorization": "Bearer  x"},
])
def test_requests_without_a_valid_key_get_the_same_401(live: LiveServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=live.base_url) as client:
        response = client.post("/v1/otp", json={"phone_number": "+447700900001"}, headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == 'Bearer realm="otpagent"'
    assert response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                               "detail": "a valid API key is required", "instance": "/v1/otp"}


def test_a_key_configured_hashed_is_accepted(live: LiveServer) -> None:
    with live.client(OTHER_KEY) as client:
        response = client.get("/v1/metrics")

    assert response.status_code == 200
    assert "queue_size" in response.json()


def test_otp_sent_over_the_api_verifies_once(api: httpx.Client, outbox: Outbox) -> None:
    sent = api.post("/v1/otp", json={"phone_number": "+44 7700 900002", "purpose": "login", "locale": "en-GB"})
    assert sent.status_code == 202
    message_id = sent.json()["message_id"]
    assert sent.headers["location"] == f"/v1/messages/{message_id}"
    code = outbox.code_for(message_id)

    first = api.post("/v1/otp/verify", json={"recipient": "+447700900002", "code": code})
    second = api.post("/v1/otp/verify", json={"recipient": "+447700900002", "code": code})

    assert first.json() == {"verified": True, "reason": "verified"}
    assert second.json() == {"verified": False, "reason": "invalid"}


def test_verify_answers_an_unknown_recipient_like_a_wrong_code(api: httpx.Client, outbox: Outbox) -> None:
    sent = api.post("/v1/otp", json={"email": "known@example.com"}).json()["message_id"]
    outbox.code_for(sent)

    unknown = api.post("/v1/otp/verify", json={"recipient": "nobody@example.com", "code": "123456"})
    wrong = api.post("/v1/otp/verify", json={"recipient": "known@example.com", "code": "000000"})

    assert unknown.status_code == wrong.status_code == 200
    assert unknown.json() == wrong.json() == {"verified": False, "reason": "invalid"}


def test_one_message_or_a_list_is_queued_and_reported(api: httpx.Client, live: LiveServer) -> None:
    one = api.post("/v1/messages", json={"email": "ops@example.com", "content": "Disk full", "message_type": "alert",
                                         "priority": "CRITICAL"})
    many = api.post("/v1/messages", json=[{"phone_number": "+447700900003", "content": f"n{i}"} for i in range(3)])

    assert one.status_code == 202 and set(one.json()) == {"message_id"}
    assert many.status_code == 202 and len(many.json()["message_ids"]) == 3
    message_id = one.json()["message_id"]
    assert wait_for(lambda: api.get(f"/v1/messages/{message_id}").json()["status"] == "sent")
    report = api.get(f"/v1/messages/{message_id}").json()
    assert report["attempts"][0]["outcome"] == "accepted"
    assert report["channel"] == "email"
    assert "attempt" in [h["type"] for h in report["history"]]


def test_errors_name_every_field_and_entry_at_fault(api: httpx.Client) -> None:
    response = api.post("/v1/messages", json=[
        {"phone_number": "+447700900004", "content": "fine"},
        {"phone_number": "12", "content": "bad number"},
        {"email": "x@example.com"},
    ])

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:otpagent:problem:invalid-request"
    assert {(e["index"], e["field"]) for e in problem["errors"]} == {(1, "phone_number"), (2, "content")}


def test_unknown_fields_are_rejected_with_their_name(api: httpx.Client) -> None:
    response = api.post("/v1/otp", json={"phone_number": "+447700900005", "pin_length": 4})

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "pin_length", "index": None, "reason": "unknown field"}]


def test_wrong_types_are_rejected_naming_the_nested_field(api: httpx.Client) -> None:
    response = api.post("/v1/messages", json={"email": "a@example.com", "content": "x", "channels": ["sms", 7]})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "channels[1]"


def test_malformed_json_is_a_400_problem(api: httpx.Client) -> None:
    response = api.post("/v1/otp", content=b'{"phone_number": ', headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert "malformed JSON" in response.json()["detail"]


def test_bodies_over_the_cap_are_refused_with_413(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(max_body_bytes=2048)
    big = json.dumps({"email": "a@example.com", "content": "x" * 4096}).encode()

    def chunks() -> Iterator[bytes]:
        yield big[:1000]
        yield big[1000:]

    with live.client() as client:
        declared = client.post("/v1/messages", content=big, headers={"content-type": "application/json"})
        streamed = client.post("/v1/messages", content=chunks(), headers={"content-type": "application/json"})

    assert declared.status_code == streamed.status_code == 413
    assert declared.headers["content-type"] == PROBLEM


def test_cancel_works_before_sending_and_conflicts_after(api: httpx.Client) -> None:
    later = api.post("/v1/messages", json={"email": "a@example.com", "content": "later",
                                           "scheduled_for": "2099-01-01T00:00:00Z"}).json()["message_id"]
    now = api.post("/v1/messages", json={"email": "a@example.com", "content": "now"}).json()["message_id"]
    assert wait_for(lambda: api.get(f"/v1/messages/{now}").json()["status"] == "sent")

    cancelled = api.delete(f"/v1/messages/{later}")
    conflict = api.delete(f"/v1/messages/{now}")
    missing = api.delete("/v1/messages/msg_nope")

    assert cancelled.json() == {"message_id": later, "status": "cancelled"}
    assert conflict.status_code == 409 and "sent" in conflict.json()["detail"]
    assert missing.status_code == 404


def test_unknown_message_is_a_404_problem(api: httpx.Client) -> None:
    response = api.get("/v1/messages/msg_unknown")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_metrics_come_as_json_and_in_prometheus_text(live: LiveServer, api: httpx.Client) -> None:
    message_id = api.post("/v1/messages", json={"phone_number": "+447700900006", "content": "m"}).json()["message_id"]
    assert wait_for(lambda: api.get(f"/v1/messages/{message_id}").json()["status"] == "sent")

    figures = api.get("/v1/metrics").json()
    text = api.get("/metrics")

    assert figures["database_stats"]["total_messages"] >= 1
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    assert "otpagent_queue_depth" in body
    channel = api.get(f"/v1/messages/{message_id}").json()["channel"]
    process = live.agent.dispatcher.worker_id
    assert f'otpagent_channel_attempts_24h{{channel="{channel}",outcome="accepted"}} 1.0' in body
    assert f'otpagent_channel_attempts_5m{{channel="{channel}",outcome="accepted"}} 1.0' in body
    # The histogram is fed by this process's event bus, on its own thread: it may lag the store.
    labels = f'channel="{channel}",outcome="accepted",process="{process}"'
    observed = f"otpagent_attempt_latency_seconds_count{{{labels}}} 1.0"
    assert wait_for(lambda: observed in api.get("/metrics").text)
    assert f'otpagent_worker_events_total{{event="sent",process="{process}"}} 1.0' in body
    assert f'otpagent_channel_cost_24h{{channel="{channel}"}}' in body
    assert 'otpagent_message_events_24h{type="sent"} 1.0' in body
    assert "otpagent_workers_live 1.0" in body
    assert "# TYPE otpagent_channel_attempts_24h gauge" in body, "a sliding window is a gauge, never a counter"


def test_metrics_need_a_key_unless_public(make_server: Callable[..., LiveServer]) -> None:
    private = make_server()
    public = make_server(public_metrics=True)

    with private.client(None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/v1/metrics").status_code == 401
    with public.client(None) as anonymous:
        assert anonymous.get("/metrics").status_code == 200


def test_probes_report_storage_and_workers(make_server: Callable[..., LiveServer]) -> None:
    with_workers = make_server()
    api_only = make_server(run_workers=False)

    with with_workers.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "checks": {"storage": "ok", "workers": "ok"}}
    with api_only.client(None) as client:
        assert client.get("/readyz").json()["checks"]["workers"] == "external"
    with_workers.agent.stop_processing()
    with with_workers.client(None) as client:
        assert client.get("/readyz").status_code == 503


def test_health_can_be_protected(make_server: Callable[..., LiveServer]) -> None:
    live = make_server(public_health=False)

    with live.client(None) as anonymous, live.client() as client:
        assert anonymous.get("/healthz").status_code == 401
        assert client.get("/healthz").status_code == 200


def test_openapi_document_and_docs_page_are_served_without_external_assets(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    docs = api.get("/docs")

    assert spec["openapi"] == "3.1.0"
    assert {"/v1/otp", "/v1/otp/verify", "/v1/messages", "/v1/messages/{message_id}", "/metrics"} <= set(spec["paths"])
    assert docs.status_code == 200
    assert "http://" not in docs.text and "https://" not in docs.text
    assert api.get("/static/docs.js").status_code == 200


def test_plugin_routes_are_mounted_without_our_api_key(api: httpx.Client, live: LiveServer) -> None:
    paths = {r.path for r in live.agent.registry.http_routes}
    if not paths:
        pytest.skip("no installed plugin registers HTTP routes")
    path = sorted(paths)[0]

    response = httpx.post(f"{live.base_url}{path}", content=b"")

    assert response.status_code != 401
    assert response.status_code not in (404, 405)
