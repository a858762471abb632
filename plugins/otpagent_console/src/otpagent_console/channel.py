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
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import attrs

from otpagent.config import COMMON_CHANNEL_KEYS
from otpagent.model import Envelope, FailureScope, SendResult
from otpagent.protocols import ChannelSpec
from otpagent.settings import describes, setting, structure

__all__ = ["ConsoleChannel", "ConsoleSettings", "create_console_channel"]

#: Body limits per kind, as the real providers enforce them (Twilio: 1,600 characters per SMS
#: request, WhatsApp 4,096; a voice message read aloud is capped at 4,000 here).
MAX_LENGTH = {"sms": 1600, "whatsapp": 4096, "voice": 4000, "email": 1_000_000}
@attrs.frozen
class FailRates:
    """Share of sends that fail for a while (retried) and for good."""

    transient: float = setting(0.0, ge=0)
    permanent: float = setting(0.0, ge=0)


@attrs.frozen
class ConsoleSettings:
    """A console channel's own keys (beside the channel keys every channel takes)."""

    outbox: str | None = setting(None, min_length=1, doc="JSON-lines file each message is appended to "
                                                         "(relative to the config file)")
    latency_ms: float = setting(0.0, ge=0, doc="Simulated provider latency")
    fail_rate: float | FailRates | None = setting(None, doc="Share of sends that fail (0 to 1), or "
                                                            "{\"transient\": x, \"permanent\": y}")
    fail_mode: str = setting("transient", choices=("transient", "permanent"))
    seed: int | None = setting(None, doc="Seed of the simulated failures")
    quiet: bool = setting(False, doc="Do not print messages")
    max_length: int | None = setting(None, gt=0, doc="Longest body accepted (default: the real provider's)")
    fail_first: int = setting(0, ge=0, doc="Fail this many sends, then succeed")

    def rates(self) -> tuple[float, float]:
        if isinstance(self.fail_rate, FailRates):
            return self.fail_rate.transient, self.fail_rate.permanent
        rate = self.fail_rate or 0.0
        return (rate, 0.0) if self.fail_mode == "transient" else (0.0, rate)

    def settings_problems(self) -> Iterator[tuple[str, str]]:
        if sum(self.rates()) > 1:
            yield "fail_rate", "rates add up to more than 1"


@describes(ConsoleSettings)
def create_console_channel(spec: ChannelSpec) -> ConsoleChannel:
    """Factory for ``"plugin": "console"`` channel sections."""
    own = {k: v for k, v in spec.settings.items() if k not in COMMON_CHANNEL_KEYS}
    s = structure(ConsoleSettings, own, path=f"channels.{spec.name}")
    kind = spec.kind or "sms"
    outbox_path = None
    if s.outbox is not None:
        outbox_path = Path(s.outbox)
        if not outbox_path.is_absolute():
            outbox_path = Path(spec.context.config_dir) / outbox_path
    transient, permanent = s.rates()
    return ConsoleChannel(
        name=spec.name, kind=kind, outbox=outbox_path, latency_ms=s.latency_ms, transient_rate=transient,
        permanent_rate=permanent, seed=s.seed, quiet=s.quiet, cost=spec.cost or 0.0,
        max_length=s.max_length or MAX_LENGTH[kind], fail_first=s.fail_first,
    )


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
        # 32 random hex digits, as a uuid4 gives, without a system call per send (the module's
        # generator is seeded from the system's randomness, again after a fork).
        provider_id = f"CON{random.getrandbits(128):032x}"
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
