"""``otpagent serve``'s workers in a process of their own, beside the API.

One Python process runs Python on one core at a time, so an API and the workers in one
process take turns at the interpreter: every OTP request waited behind claims, sends and
outcomes, and the threads' hand-overs cost more than the work (docs/benchmarks.md, the
seventeenth and eighteenth rounds). In a process of their own the workers run beside the API
instead of between its requests: measured on 2 cores, 12-31% more OTP pairs a second on
SQLite and 0-26% on PostgreSQL (its server and the load already filling the cores), where a
second API process added nothing; the time to the handset is that of any worker in another
process (SQLite's wake-up watch, PostgreSQL's NOTIFY: a few milliseconds). And a channel plugin
that spins or crashes its interpreter takes the delivery process down with it, not the API.

``serve`` starts ``otpagent run`` as its child (:class:`DeliveryProcess`), in a session of its
own so that the terminal's Ctrl-C reaches ``serve`` only; restarts it when it ends unasked (after
1 s, doubling to 30 s while it keeps ending); and stops it with SIGTERM (its in-flight sends
finish and are recorded) once the API has stopped. The child ends on its own when ``serve`` is
gone, so a killed ``serve`` leaves no worker behind.

The child's own figures (the per-process series of ``/metrics``: its dispatcher's counters and
the attempt-latency histogram) are served on a loopback port the child picks and writes to a
file; every API process reads them through a :class:`DeliveryLink`, merges them into its
``/metrics`` and reports the child in ``/readyz``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from otpagent.logs import get_logger
from otpagent.server.delivery_env import PARENT_ENV, PORT_FILE_ENV

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from otpagent.agent import IntelligentOTPAgent

__all__ = ["DeliveryLink", "DeliveryProcess", "WithDelivery", "export_process_metrics",
           "parent_gone"]

#: Restart pauses: the first, the longest, and how long a child must have run for the next
#: restart to start from the first pause again.
FIRST_PAUSE, LONGEST_PAUSE, SETTLED_AFTER = 1.0, 30.0, 60.0
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: How long an API process waits for the child's figures or its answer.
LINK_TIMEOUT = 1.0

log = get_logger("otpagent.server")


class DeliveryLink:
    """What an API process knows of the delivery process: the file holding its figures' port."""

    def __init__(self, port_file: Path) -> None:
        self.port_file = port_file

    def _port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None  # not written yet (starting), or the child is being replaced

    def alive(self) -> bool:
        """Whether the delivery process answers on its port (it is up and working the queue)."""
        port = self._port()
        if port is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=LINK_TIMEOUT):
                return True
        except OSError:
            return False

    def families(self) -> list[Metric]:
        """The delivery process's own metric families (none while it cannot be reached)."""
        port = self._port()
        if port is None:
            return []
        # OpenMetrics: its parser keeps each family whole (a histogram's ``_created`` samples
        # included), where the classic format's would split them into families of their own.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=LINK_TIMEOUT)
        try:
            connection.request("GET", "/metrics", headers={"Accept": _OPENMETRICS})
            response = connection.getresponse()
            text = response.read().decode() if response.status == 200 else ""
        except (OSError, http.client.HTTPException):
            return []
        finally:
            connection.close()
        try:
            return list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]
        except ValueError:  # cut short (the child stopping mid-answer): this scrape goes without
            return []


class WithDelivery(Collector):
    """An API process's registry with the delivery process's families merged in: one family per
    name, holding both processes' samples (told apart by their ``process`` label), as the
    exposition format requires."""

    def __init__(self, registry: CollectorRegistry, link: DeliveryLink) -> None:
        self.registry = registry
        self.link = link

    def collect(self) -> Iterator[Metric]:
        yield from merge_families(self.registry.collect(), self.link.families())


def merge_families(ours: Iterable[Metric], theirs: Iterable[Metric]) -> Iterator[Metric]:
    """``ours`` with the samples of each family of ``theirs`` added to ours of the same name
    (a family only they have is added whole)."""
    by_name = {family.name: family for family in ours}
    for family in theirs:
        mine = by_name.get(family.name)
        if mine is None:
            by_name[family.name] = family
        elif mine.type == family.type:
            mine.samples.extend(family.samples)
    yield from by_name.values()


def export_process_metrics(agent: IntelligentOTPAgent, port_file: Path) -> Callable[[], None]:
    """In the delivery process: serve this process's figures on a loopback port, write the port
    to ``port_file``; returns what stops serving them. Call before the agent starts working."""
    from otpagent.server.prometheus import AttemptLatencyTap, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(agent))
    agent.bus.add_sink(AttemptLatencyTap(registry, agent.dispatcher.worker_id))
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    written = port_file.with_name(f"{port_file.name}.{os.getpid()}")
    written.write_text(str(server.server_port))
    written.replace(port_file)  # whole or absent for a reader

    def stop() -> None:
        with contextlib.suppress(OSError):
            port_file.unlink()
        server.shutdown()
        server.server_close()

    return stop


def parent_gone(parent: int | None) -> bool:
    """In the delivery process: whether the ``serve`` that started it has ended."""
    return parent is not None and os.getppid() != parent


class DeliveryProcess:
    """``otpagent run`` as ``serve``'s child, kept running until :meth:`stop` (see the module)."""

    def __init__(self, root_args: Sequence[str]) -> None:
        #: The CLI's own options (``--config``, ``--log-level``) for the child's command line.
        self.root_args = list(root_args)
        # Named now (the API is built with the link before the child starts), made by start():
        # a serve that fails before it leaves nothing behind.
        self._dir = Path(tempfile.gettempdir()) / f"otpagent-delivery-{os.getpid()}-{secrets.token_hex(8)}"
        self.link = DeliveryLink(self._dir / "port")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._supervisor: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        """What an API process of ``serve --processes N`` needs to find the child."""
        return {PORT_FILE_ENV: str(self.link.port_file)}

    def start(self) -> None:
        self._dir.mkdir(mode=0o700)  # the child's port file: readable by this user only
        with self._lock:
            self._process = self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="otpagent-delivery", daemon=True)
        self._supervisor.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.environment(), PARENT_ENV: str(os.getpid())}
        # A session of its own: the terminal's Ctrl-C goes to serve, which stops the child in turn.
        return subprocess.Popen([sys.executable, "-m", "otpagent", *self.root_args, "run"],  # noqa: S603 - our own CLI
                                env=env, start_new_session=True)

    def _supervise(self) -> None:
        pause = FIRST_PAUSE
        while True:
            process = self._process
            started = time.monotonic()
            code = process.wait() if process is not None else None
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= SETTLED_AFTER:
                pause = FIRST_PAUSE
            if process is not None:
                log.error("delivery_process_ended", exit_code=code, restart_in_seconds=pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, LONGEST_PAUSE)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._process = self._spawn()
                except OSError:  # out of processes or descriptors: try again after the next pause
                    log.exception("delivery_process_not_started")
                    self._process = None

    def stop(self, timeout: float) -> bool:
        """SIGTERM the child (its in-flight sends finish), kill it if it has not ended within
        ``timeout`` seconds; True when it ended on its own."""
        with self._lock:
            self._stopping.set()
            process = self._process
        ended = True
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                ended = False
                log.warning("delivery_process_killed", waited_seconds=timeout)
                process.kill()
                process.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        shutil.rmtree(self._dir, ignore_errors=True)
        return ended
