"""Guard rails around a channel plugin's ``send``: what counts as a fault, in words naming the plugin.

A channel promises to classify every provider answer into a :class:`SendResult` within a bounded
time. One that breaks the promise (raises, returns something else, or never returns) is treated
as a *transient failure of that channel*: the dispatcher records it as an attempt, retries with
backoff, falls back to the next channel, and finally fails the message with an error that names
the channel, its plugin (distribution and version) and what went wrong.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from otpagent.config import ChannelConfig
from otpagent.logs import get_logger
from otpagent.logthrottle import LogThrottle
from otpagent.model import Envelope, SendResult
from otpagent.protocols import Channel
from otpagent.workerpool import WorkerPool

__all__ = ["ChannelFault", "ChannelGuard", "call_send", "overran"]

log = get_logger("otpagent.dispatcher")

#: Longest exception text kept in an error: enough to diagnose, not a whole response body.
_MAX_DETAIL = 300


@attrs.frozen
class ChannelFault:
    """A broken promise of a channel; ``kind`` becomes the attempt's error code."""

    kind: str  # "exception" | "bad-result" | "timeout"
    reason: str
    exc: BaseException | None = None

    def as_result(self) -> SendResult:
        return SendResult.transient(self.reason, code=self.kind)


def call_send(channel: Channel, envelope: Envelope, who: str) -> SendResult | ChannelFault:
    """``channel.send(envelope)``, with a raise or a wrong return type turned into a fault.

    ``who`` names the channel and its plugin, e.g. ``channel SMS (acme-sms 1.0.2)``.
    """
    try:
        result: Any = channel.send(envelope)
    except Exception as exc:
        detail = str(exc).strip()[:_MAX_DETAIL]
        return ChannelFault("exception", f"{who} raised {type(exc).__name__}" + (f": {detail}" if detail else ""),
                            exc)
    if not isinstance(result, SendResult):
        what = "None" if result is None else f"a {type(result).__name__}"
        return ChannelFault("bad-result", f"{who} returned {what} instead of a SendResult")
    return result


def overran(who: str, timeout: float, grace: float) -> ChannelFault:
    """The fault of a call abandoned after ``timeout`` + ``grace`` seconds."""
    return ChannelFault("timeout", f"{who} did not return within {timeout:g} s + {grace:g} s grace; "
                                   "the call was abandoned")


class ChannelGuard:
    """Calls channels under the guard rails and names their plugins in what it reports.

    ``labels`` maps a channel name to its plugin's label (distribution and version, e.g.
    ``"acme-sms 1.0.2"``); a channel without one is named by its configured plugin. ``count``
    is told ``"channel_faults"`` for every fault and ``"abandoned_calls"`` for every overrun.
    """

    def __init__(self, *, configs: Mapping[str, ChannelConfig], labels: Mapping[str, str] | None,
                 timeout: float, grace: float, count: Callable[[str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.configs = configs
        self.labels = dict(labels or {})
        self.timeout = timeout
        self.grace = grace
        self.count = count
        self._log = LogThrottle(60.0, clock)
        self._who: dict[str, str] = {}

    def label(self, channel_name: str) -> str:
        cfg = self.configs.get(channel_name)
        return self.labels.get(channel_name) or (cfg.plugin if cfg is not None else "unknown plugin")

    def who(self, channel_name: str) -> str:
        """``channel SMS (acme-sms 1.0.2)``: how errors name the channel and its plugin."""
        who = self._who.get(channel_name)
        if who is None:
            who = self._who[channel_name] = f"channel {channel_name} ({self.label(channel_name)})"
        return who

    def send(self, channel: Channel, channel_name: str, envelope: Envelope, pool: WorkerPool | None,
             on_overrun: Callable[[SendResult], None]) -> SendResult | None:
        """Send under the deadline (timeout + grace), watched by ``pool``'s watchdog.

        Returns the result (a fault already turned into a transient failure), or None when the
        call overran: it was abandoned, ``on_overrun`` got the timeout's result on the watchdog
        thread, and whatever the call returns now is dropped.
        """
        watch = pool.watch(self.timeout + self.grace, functools.partial(self._overran, channel_name, envelope,
                                                                        on_overrun)) if pool is not None else None
        outcome = call_send(channel, envelope, self.who(channel_name))
        if watch is not None and pool is not None and not pool.finish(watch):
            log.warning("late_result_discarded", channel=channel_name, plugin=self.label(channel_name),
                        message_id=envelope.message_id, returned=type(outcome).__name__)
            return None
        if isinstance(outcome, ChannelFault):
            self.report(channel_name, outcome, envelope.message_id)
            return outcome.as_result()
        return outcome

    def _overran(self, channel_name: str, envelope: Envelope, on_overrun: Callable[[SendResult], None]) -> None:
        fault = overran(self.who(channel_name), self.timeout, self.grace)
        self.count("abandoned_calls")
        self.report(channel_name, fault, envelope.message_id)
        on_overrun(fault.as_result())

    def report(self, channel_name: str, fault: ChannelFault, message_id: str | None) -> None:
        """Count a fault; log it at most once a minute per channel and kind of fault."""
        self.count("channel_faults")
        quiet = self._log.allow((channel_name, fault.kind))
        if quiet is not None:
            log.error("channel_fault", channel=channel_name, plugin=self.label(channel_name), fault=fault.kind,
                      problem=fault.reason, message_id=message_id, repeats_since_last_log=quiet, exc_info=fault.exc)
