"""The live dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Skipped only outside CI when Chromium is absent; in CI (``CI`` set) a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.service.conftest import API_KEY, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = os.environ.get("OTPAGENT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: apt-get install -y chromium")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is missing: pip install playwright")
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def test_the_dashboard_needs_a_key(live: LiveServer, browser: Any) -> None:
    page = browser.new_page()

    response = page.goto(f"{live.base_url}/")

    assert response.status == 401
    assert page.locator("form input[name=key]").count() == 1
    with httpx.Client(base_url=live.base_url) as client:
        assert client.get("/dashboard/snapshot").status_code == 401


def test_the_dashboard_shows_live_figures_as_messages_are_sent(live: LiveServer, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(live.base_url) else None)
    page.goto(f"{live.base_url}/")
    page.fill("input[name=key]", API_KEY)
    page.click("button[type=submit]")
    expect(page.locator("#total-messages")).to_have_text("0", timeout=10_000)

    with live.client() as api:
        api.post("/v1/messages", json=[{"email": f"u{i}@example.com", "content": f"hello {i}", "priority": "LOW"}
                                       for i in range(5)])
        api.post("/v1/otp", json={"phone_number": "+447700900777"})
        assert wait_for(lambda: api.get("/v1/metrics").json()["queue_size"] == 0)

    expect(page.locator("#total-messages")).to_have_text("6", timeout=10_000)
    expect(page.locator("#recent tbody tr")).to_have_count(6, timeout=10_000)
    expect(page.locator("#channels tr[data-channel=email] td:nth-child(3)")).to_have_text("5", timeout=10_000)
    page.wait_for_timeout(1500)  # let the charts gather a few points for the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    assert page.inner_text("#success-rate") == "100.0%"
    assert "••" in page.inner_text("#recent")  # recipients are masked
    assert page.locator("#recent .attempt.accepted").count() == 6
    assert external == []


def test_the_api_explorer_runs_a_request_under_the_same_csp(live: LiveServer, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    external: list[str] = []
    violations: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(live.base_url) else None)
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    response = page.goto(f"{live.base_url}/docs")

    assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    expect(page.locator(".opblock-summary-path[data-path='/v1/metrics']")).to_have_count(1, timeout=20_000)
    page.click("button.authorize")
    page.fill(".auth-container input[type=text], .auth-container input[type=password]", API_KEY)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".btn-done")
    operation = page.locator(".opblock-get:has(.opblock-summary-path[data-path='/v1/metrics'])")
    operation.locator(".opblock-summary").click()
    operation.locator("button.execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200",
                                                                                            timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-explorer.png"), full_page=False)

    assert '"queue_size"' in operation.locator(".live-responses-table").inner_text()
    assert violations == []
    assert external == []


def test_explorer_assets_are_cached_and_revalidated(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as client:
        first = client.get("/docs/assets/swagger-ui-bundle.js")
        again = client.get("/docs/assets/swagger-ui-bundle.js", headers={"If-None-Match": first.headers["etag"]})
        missing = client.get("/docs/assets/../../agent.py")

    assert first.status_code == 200 and first.headers["content-type"].startswith("text/javascript")
    assert len(first.content) > 1_000_000
    assert again.status_code == 304
    assert missing.status_code == 404
