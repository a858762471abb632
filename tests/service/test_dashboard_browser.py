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

from otpagent.fleet import queue_depth_samples
from tests.conftest import agent_config, console_channels, wait_for
from tests.service.conftest import API_KEY, LiveServer, service_config

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
    expect(page.locator("#caption-throughput")).to_have_text("· 6 finished in the last hour", timeout=10_000)
    expect(page.locator("#channels tr[data-channel=email] td:nth-child(4)")).to_have_text("5", timeout=10_000)
    page.wait_for_timeout(1500)  # let the charts gather a few points for the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    assert page.inner_text("#success-rate") == "100.0%"
    assert "••" in page.inner_text("#recent")  # recipients are masked
    assert page.locator("#recent .attempt.accepted").count() == 6
    assert external == []


def _sign_in(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.base_url}/")
    page.fill("input[name=key]", API_KEY)
    page.click("button[type=submit]")


#: Counts the pixels of a colour drawn above a chart's zero line (a line at zero draws none).
_PIXELS_ABOVE_ZERO = """([id, r, g, b]) => {
  const c = document.getElementById(id), ctx = c.getContext("2d");
  const ratio = window.devicePixelRatio || 1, h = c.height, w = c.width;
  const zero = Math.floor((c.clientHeight - 14) * ratio) - 4;  // the plot's bottom edge, less a margin
  const data = ctx.getImageData(0, 0, w, zero).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) { n++; }
  }
  return n;
}"""


def test_the_charts_show_the_last_hour_from_storage_as_the_page_loads(live: LiveServer, browser: Any) -> None:
    from playwright.sync_api import expect

    with live.client() as api:
        api.post("/v1/messages", json=[{"email": f"u{i}@example.com", "content": f"before {i}", "priority": "LOW"}
                                       for i in range(5)])
        assert wait_for(lambda: api.get("/v1/metrics").json()["queue_size"] == 0)
    state = live.agent.capabilities.shared_state
    assert wait_for(lambda: queue_depth_samples(state, 0.0) != [], timeout=20), "a worker samples the queue"
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.route("**/dashboard/snapshot", lambda route: route.abort())  # only what the page read on load

    _sign_in(page, live)

    expect(page.locator("#caption-throughput")).to_have_text("· 5 finished in the last hour", timeout=10_000)
    expect(page.locator("#caption-success")).to_have_text("· 5 sent, 0 failed in the last hour")
    expect(page.locator("#caption-queue")).to_have_text("· sampled by the workers each minute")
    assert page.evaluate(_PIXELS_ABOVE_ZERO, ["chart-throughput", 0x1F, 0x9D, 0x55]) > 0
    assert page.evaluate(_PIXELS_ABOVE_ZERO, ["chart-attempts", 0x1F, 0x9D, 0x55]) > 0
    assert page.evaluate(_PIXELS_ABOVE_ZERO, ["chart-success", 0xC9, 0x8A, 0x10]) > 0
    assert page.evaluate(_PIXELS_ABOVE_ZERO, ["chart-attempts", 0xD6, 0x45, 0x45]) == 0, "no attempt failed"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-history.png"), full_page=True)


def test_message_and_attempt_figures_are_labelled_apart(make_server: Any, browser: Any, tmp_path: Any) -> None:
    from playwright.sync_api import expect

    config = service_config(tmp_path)
    config["channels"] = console_channels(tmp_path / "outbox.jsonl")
    config["channels"]["email"]["fail_first"] = 2  # two refused attempts, then every message goes out
    config["routing"] = agent_config(tmp_path)["routing"]
    live = make_server(config)
    with live.client() as api:
        api.post("/v1/messages", json=[{"email": f"u{i}@example.com", "content": f"m{i}", "priority": "LOW"}
                                       for i in range(3)])
        assert wait_for(lambda: api.get("/v1/metrics").json()["database_stats"]["sent_messages"] == 3)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})

    _sign_in(page, live)

    expect(page.locator("#attempts-failed")).to_have_text("2", timeout=10_000)
    assert page.inner_text("#success-rate") == "100.0%"
    assert page.inner_text("#attempts-total") == "5"
    assert page.inner_text("#attempts-rate") == "60.0%"
    assert page.inner_text("#retries") == "2 / 0"
    tiles = {page.inner_text(f"#{i}").strip(): page.locator(f".tile:has(#{i}) .label").inner_text()
             for i in ("success-rate", "attempts-failed")}
    assert tiles == {"100.0%": "Message success rate", "2": "Attempts failed"}
    expect(page.locator("#channels tr[data-channel=email] td:nth-child(6)")).to_have_text("2")


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
