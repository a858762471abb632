"""Dashboard sign-in without a browser: key in the address once, cookie after; never for the API."""

from __future__ import annotations

import httpx

from tests.service.conftest import API_KEY, LiveServer


def test_a_key_in_the_address_becomes_a_cookie_and_is_dropped_from_the_url(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as browser:
        redirect = browser.get("/", params={"key": API_KEY})
        page = browser.get("/")
        snapshot = browser.get("/dashboard/snapshot")
        history = browser.get("/dashboard/history")

    assert redirect.status_code == 303 and redirect.headers["location"] == "/"
    cookie = redirect.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert API_KEY not in cookie
    assert page.status_code == 200 and "chart-queue" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert set(snapshot.json()) >= {"queue_size", "messages", "last_24h", "last_minute", "channels", "recent"}
    assert len(history.json()["points"]) == 60


def test_the_login_form_rejects_a_wrong_key(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as browser:
        wrong = browser.post("/login", data={"key": "not-the-key"})

    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers


def test_the_dashboard_cookie_does_not_open_the_api(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as browser:
        browser.post("/login", data={"key": API_KEY})
        assert browser.get("/dashboard/snapshot").status_code == 200

        api = browser.post("/v1/messages", json={"email": "a@example.com", "content": "csrf"})

    assert api.status_code == 401


def test_a_forged_session_cookie_is_refused(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url, cookies={"otpagent_session": "0123456789abcdef.9999999999.00"}) as b:
        assert b.get("/dashboard/snapshot").status_code == 401
        assert b.get("/dashboard/history").status_code == 401
        assert b.get("/").status_code == 401
