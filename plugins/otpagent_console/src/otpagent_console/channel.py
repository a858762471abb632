"""The console channel: a stand-in provider for local work, demos, tests and benchmarks.

Each send prints one readable line and, when ``outbox`` is set, appends one JSON object per line
(message id, channel, kind, recipient, body). ``latency_ms`` and ``fail_rate`` make it behave like
a slow or flaky provider so retries, fallback and throughput can be shown without one.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from otpagent.config import COMMON_CHANNEL_KEYS
from otpagent.errors import ConfigError
from otpagent.model import Envelope, FailureScope, SendResult
from otpagent.protocols import ChannelSpec

__all__ = ["ConsoleChannel", "create_console_channel"]

#: Body limits per kind, as the real providers enforce them (Twilio: 1,600 characters per SMS
#: request, WhatsApp 4,096; a voice message read aloud is capped at 4,000 here).
MAX_LENGTH = {"sms": 1600, "whatsapp": 4096, "voice": 4000, "email": 1_000_000}
_KEYS = COMMON_CHANNEL_KEYS | {"outbox", "latency_ms", "fail_rate", "fail_mode", "seed", "quiet", "max_length",
                               "fail_first"}


def create_console_channel(spec: ChannelSpec) -> ConsoleChannel:
    """Factory for ``"plugin": "console"`` channel sections."""
    s = spec.settings
    path = f"channels.{spec.name}"
    for key in s:
        if key not in _KEYS:
            expected = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{path}.{key}", f"unknown key for a console channel (expected one of {expected})")
    kind = spec.kind or "sms"
    outbox = s.get("outbox")
    if outbox is not None:
        if not isinstance(outbox, str) or not outbox:
            raise ConfigError(f"{path}.outbox", "must be a file path")
        outbox_path = Path(outbox)
        if not outbox_path.is_absolute():
            outbox_path = Path(spec.context.config_dir) / outbox_path
    else:
        outbox_path = None
    latency = _number(s.get("latency_ms", 0), f"{path}.latency_ms")
    transient, permanent = _fail_rates(s.get("fail_rate"), s.get("fail_mode", "transient"), path)
    fail_first = s.get("fail_first", 0)
    if isinstance(fail_first, bool) or not isinstance(fail_first, int) or fail_first < 0:
        raise ConfigError(f"{path}.fail_first", "must be a non-negative integer")
    quiet = s.get("quiet", False)
    if not isinstance(quiet, bool):
        raise ConfigError(f"{path}.quiet", "must be true or false")
    max_length = s.get("max_length", MAX_LENGTH[kind])
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ConfigError(f"{path}.max_length", "must be a positive integer")
    return ConsoleChannel(
        name=spec.name, kind=kind, outbox=outbox_path, latency_ms=latency, transient_rate=transient,
        permanent_rate=permanent, seed=s.get("seed"), quiet=quiet, cost=spec.cost or 0.0,
        max_length=max_length, fail_first=fail_first,
    )


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(path, f"must be a non-negative number, got {value!r}")
    return float(value)


def _fail_rates(value: Any, mode: Any, path: str) -> tuple[float, float]:
    if value is None:
        return 0.0, 0.0
    if isinstance(value, Mapping):
        for key in value:
            if key not in ("transient", "permanent"):
                raise ConfigError(f"{path}.fail_rate.{key}", "unknown key (expected transient, permanent)")
        t = _number(value.get("transient", 0), f"{path}.fail_rate.transient")
        p = _number(value.get("permanent", 0), f"{path}.fail_rate.permanent")
    else:
        rate = _number(value, f"{path}.fail_rate")
        if mode not in ("transient", "permanent"):
            raise ConfigError(f"{path}.fail_mode", "must be 'transient' or 'permanent'")
        t, p = (rate, 0.0) if mode == "transient" else (0.0, rate)
    if t + p > 1:
        raise ConfigError(f"{path}.fail_rate", "rates add up to more than 1")
    return t, p


class ConsoleChannel:
    """Prints messages; a :class:`~otpagent.protocols.Channel` of any kind."""

    def __init__(
        self, *, name: str, kind: str, outbox: Path | None = None, latency_ms: float = 0.0,
        transient_rate: float = 0.0, permanent_rate: float = 0.0, seed: int | None = None,
        quiet: bool = False, cost: float = 0.0, max_length: int = 1600, fail_first: int = 0,
        stream: TextIO | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.outbox = outbox
        self.latency_ms = latency_ms
        self.transient_rate = transient_rate
        self.permanent_rate = permanent_rate
        self.quiet = quiet
        self.cost = cost
        self.max_length = max_length
        self._fail_first = fail_first
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stream = stream
        self._fd: int | None = None
        if outbox is not None:
            outbox.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND makes each line one atomic write, even with several worker processes.
            self._fd = os.open(outbox, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def supports(self, envelope: Envelope) -> bool:
        return bool(envelope.email) if self.kind == "email" else bool(envelope.phone_number)

    def check(self, envelope: Envelope) -> str | None:
        if len(envelope.body) > self.max_length:
            return f"body is {len(envelope.body)} characters; {self.kind} allows at most {self.max_length}"
        return None

    def estimate_cost(self, envelope: Envelope) -> float:
        return self.cost

    def send(self, envelope: Envelope) -> SendResult:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        with self._lock:
            roll = self._random.random()
            forced = self._fail_first > 0
            if forced:
                self._fail_first -= 1
        if forced or roll < self.transient_rate:
            return SendResult.transient("simulated transient failure", code="console-503")
        if roll < self.transient_rate + self.permanent_rate:
            return SendResult.permanent("simulated permanent failure", code="console-400",
                                        scope=FailureScope.MESSAGE)
        recipient = envelope.email if self.kind == "email" else envelope.phone_number
        provider_id = "CON" + uuid.uuid4().hex
        if self._fd is not None:
            line = json.dumps({
                "message_id": envelope.message_id, "channel": self.name, "kind": self.kind,
                "recipient": recipient, "body": envelope.body, "provider_message_id": provider_id,
                "message_type": envelope.message_type.value, "priority": envelope.priority.name,
                "at": time.time(),
            }, ensure_ascii=False)
            os.write(self._fd, (line + "\n").encode())
        if not self.quiet:
            stream = self._stream or sys.stdout
            stream.write(f"[{self.name}] {self.kind} -> {recipient} "
                         f"({envelope.message_type.value}, {envelope.priority.name}): {envelope.body}\n")
            stream.flush()
        return SendResult.accepted(provider_id, cost=self.cost)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
