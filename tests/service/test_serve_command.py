"""``otpagent serve`` as an operator runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from otpagent.gcsettle import THRESHOLDS
from otpagent.server.delivery_env import PORT_FILE_ENV
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


def stop(process: subprocess.Popen[str]) -> str:
    """Stop ``serve`` as an operator does (SIGTERM); it must exit 0. Returns what it wrote to stderr."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def send(base: str, to: str = "a@example.com") -> str:
    response = httpx.post(f"{base}/v1/messages", json={"email": to, "content": "hi"}, headers=HEADERS)
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


def sent(base: str, message_id: str) -> bool:
    return bool(httpx.get(f"{base}/v1/messages/{message_id}", headers=HEADERS).json()["status"] == "sent")


def delivery_processes(pid: int) -> list[int]:
    """The pids of ``pid``'s children that run ``otpagent ... run`` (serve's delivery process)."""
    return [child for child, line in _child_processes(pid) if "-m otpagent" in line and line.rstrip().endswith(" run")]


def test_serve_sends_messages_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    try:
        message_id = send(base)
        assert wait_for(lambda: sent(base, message_id))
        assert httpx.get(f"{base}/readyz").json()["checks"]["workers"] == "ok"
        (child,) = delivery_processes(process.pid)  # the workers run in a process of their own
        # ... whose figures /metrics shows beside the API process's, each under its own label
        metrics = httpx.get(f"{base}/metrics", headers=HEADERS).text
        counts = {line.split('process="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                  for line in metrics.splitlines() if line.startswith('otpagent_worker_events_total{event="sent"')}
        assert sorted(counts.values()) == [0.0, 1.0] and any(f":{child}:" in p for p, n in counts.items() if n)
        assert 'otpagent_attempt_latency_seconds_count{channel="email"' in metrics
    finally:
        err = stop(process)

    assert "workers in a delivery process" in err and "stopped" in err
    assert not _children(process.pid)


def test_serve_starts_its_delivery_process_again_when_it_dies(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    try:
        assert wait_for(lambda: len(delivery_processes(process.pid)) == 1)
        (first,) = delivery_processes(process.pid)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: delivery_processes(process.pid) not in ([], [first]), timeout=20, interval=0.1)
        message_id = send(base)
        assert wait_for(lambda: sent(base, message_id), timeout=20)
        assert wait_for(lambda: httpx.get(f"{base}/readyz").json()["checks"]["workers"] == "ok")
    finally:
        err = stop(process)

    assert "delivery_process_ended" in err


def test_a_killed_serve_leaves_no_delivery_process_behind(tmp_path: Path) -> None:
    process, _base = start(tmp_path)
    assert wait_for(lambda: len(delivery_processes(process.pid)) == 1)
    (child,) = delivery_processes(process.pid)
    environ = dict(v.split("=", 1) for v in Path(f"/proc/{child}/environ").read_text().split("\0") if "=" in v)
    directory = Path(environ[PORT_FILE_ENV]).parent
    assert directory.is_dir()
    process.kill()
    process.communicate(timeout=30)

    assert wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), timeout=20, interval=0.1)
    assert wait_for(lambda: not directory.exists(), timeout=10)  # the child tidied up after serve


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_serve_workers_in_process_keeps_them_in_the_server(tmp_path: Path) -> None:
    process, base = start(tmp_path, "--workers-in-process")
    try:
        message_id = send(base)
        assert wait_for(lambda: sent(base, message_id))
        assert httpx.get(f"{base}/readyz").json()["checks"]["workers"] == "ok"
        assert delivery_processes(process.pid) == []
    finally:
        err = stop(process)

    assert "workers in the process" in err


def test_a_serve_that_cannot_start_leaves_no_delivery_process_or_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**service_config(tmp_path), "server": {"api_keys": []}}))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([sys.executable, "-m", "otpagent", "--config", str(config), "serve"], capture_output=True,
                            text=True, timeout=60, check=False, env={**os.environ, "TMPDIR": str(scratch)})

    assert result.returncode == 2, result.stderr
    assert "server.api_keys" in result.stderr
    assert list(scratch.iterdir()) == []


def test_serve_refuses_no_workers_with_workers_in_process(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(service_config(tmp_path)))
    result = subprocess.run([sys.executable, "-m", "otpagent", "--config", str(config), "serve", "--no-workers",
                             "--workers-in-process"], capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 2
    assert "--no-workers and --workers-in-process exclude each other" in result.stderr


def test_serve_settles_the_collector_for_a_long_running_process(tmp_path: Path) -> None:
    process, _base = start(tmp_path, launcher=SETTLE_REPORTING_CLI)
    err = stop(process)

    assert f"settled {THRESHOLDS}" in err


def test_serve_without_workers_leaves_the_queue_to_otpagent_run(tmp_path: Path) -> None:
    process, base = start(tmp_path, "--no-workers")
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        httpx.post(f"{base}/v1/messages", json={"email": "a@example.com", "content": "hi"}, headers=headers)
        ready = httpx.get(f"{base}/readyz").json()
        metrics = httpx.get(f"{base}/v1/metrics", headers=headers).json()
    finally:
        stop(process)

    assert ready["checks"]["workers"] == "external"
    assert metrics["queue_size"] == 1


def _children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes."""
    return [line for _child, line in _child_processes(pid)]


def _child_processes(pid: int) -> list[tuple[int, str]]:
    """``pid``'s child processes (zombies too): their pids and command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
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
        err = stop(process)

    assert "2 processes" in err and "stopped" in err
    assert not _children(process.pid)
