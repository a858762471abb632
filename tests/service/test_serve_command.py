"""``otpagent serve`` as an operator runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from otpagent.gcsettle import THRESHOLDS
from tests.conftest import SETTLE_REPORTING_CLI, wait_for
from tests.service.conftest import API_KEY, service_config
from tests.service.receiver import free_port


def start(tmp_path: Path, *args: str, launcher: str = "from otpagent.cli import main; main()",
          ) -> tuple[subprocess.Popen[str], str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(service_config(tmp_path)))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "--config", str(config), "serve",
         "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_for(up, timeout=20, interval=0.1), process.stderr.read() if process.poll() is not None else ""
    return process, base


def test_serve_sends_messages_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        message_id = httpx.post(f"{base}/v1/messages", json={"email": "a@example.com", "content": "hi"},
                                headers=headers).json()["message_id"]
        assert wait_for(lambda: httpx.get(f"{base}/v1/messages/{message_id}", headers=headers).json()["status"]
                        == "sent")
        assert httpx.get(f"{base}/readyz").json()["checks"]["workers"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    assert "stopped" in err


def test_serve_settles_the_collector_for_a_long_running_process(tmp_path: Path) -> None:
    process, _base = start(tmp_path, launcher=SETTLE_REPORTING_CLI)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    assert f"settled {THRESHOLDS}" in err


def test_serve_without_workers_leaves_the_queue_to_otpagent_run(tmp_path: Path) -> None:
    process, base = start(tmp_path, "--no-workers")
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        httpx.post(f"{base}/v1/messages", json={"email": "a@example.com", "content": "hi"}, headers=headers)
        ready = httpx.get(f"{base}/readyz").json()
        metrics = httpx.get(f"{base}/v1/metrics", headers=headers).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)

    assert ready["checks"]["workers"] == "external"
    assert metrics["queue_size"] == 1


def _children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_serve_with_several_processes_shares_the_port_and_the_queue(tmp_path: Path) -> None:
    process, base = start(tmp_path, "--processes", "2")
    try:
        servers = [c for c in _children(process.pid) if "spawn_main" in c and "resource_tracker" not in c]
        assert len(servers) == 2, servers
        headers = {"Authorization": f"Bearer {API_KEY}"}
        ids = []
        for i in range(30):  # a new connection each time: the kernel spreads them over both processes
            response = httpx.post(f"{base}/v1/messages", json={"email": f"a{i}@example.com", "content": "hi"},
                                  headers=headers)
            assert response.status_code == 202, response.text
            ids.append(response.json()["message_id"])

        def all_sent() -> bool:
            return all(httpx.get(f"{base}/v1/messages/{i}", headers=headers).json()["status"] == "sent" for i in ids)

        assert wait_for(all_sent, timeout=20, interval=0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    assert "2 processes" in err and "stopped" in err
    assert not _children(process.pid)
