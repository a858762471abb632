"""OpenTelemetry traces of a message's way: enqueue, claim, routing, each provider call, callbacks.

This module is the seam the rest of otpagent calls, and it imports nothing of OpenTelemetry:
with tracing off (the default unless the host app configured a tracer provider) every hook is a
no-op of :class:`Tracing`, and ``import otpagent`` never loads ``opentelemetry``. With tracing on,
:func:`build_tracing` returns :class:`otpagent.tracing_otel.OtelTracing`, which needs the
``otel`` extra and, as OpenTelemetry asks of libraries, uses the API only: spans go to the
global tracer provider (or the one handed to the agent); the app, or ``otpagent serve``
(:mod:`otpagent.tracing_sdk`), configures the SDK and its exporter.

Config (``config.json``)::

    "tracing": {"enabled": true}      # true | false | "auto" (default)

``"auto"`` traces when the host app has set a global tracer provider before the agent is built
(checked without importing OpenTelemetry when the app has not). The trace crosses the queue in
the message itself: :func:`current_trace_context` hands the W3C context of the enqueue span to
:func:`otpagent.intake.to_new_message`, storage keeps it (``messages.trace_context``), and the
worker that claims the message continues that trace. See docs/tracing.md.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from otpagent.errors import ConfigError

if TYPE_CHECKING:
    from otpagent.model import Event, Message
    from otpagent.protocols import ProviderEvent
    from otpagent.routing.planner import RoutePlanner, Unroutable
    from otpagent.tracing_otel import Claim

__all__ = ["NO_TRACING", "SpanOutcome", "Tracing", "build_tracing", "current_trace_context", "parse_tracing"]

#: The W3C trace context of the enqueue span in progress in this thread or task (None: none, or
#: tracing off). Read by :func:`otpagent.intake.to_new_message` so every message queued inside
#: the span carries it, however it was queued (send_message, send_otp, bulk, a JSON file).
_ENQUEUE_CONTEXT: ContextVar[Mapping[str, str] | None] = ContextVar("otpagent_enqueue_trace_context",
                                                                    default=None)


def current_trace_context() -> Mapping[str, str] | None:
    """The trace context a message queued now should carry (None when not tracing)."""
    return _ENQUEUE_CONTEXT.get()


@contextlib.contextmanager
def carrying(context: Mapping[str, str] | None) -> Iterator[None]:
    """Messages queued inside this block carry ``context`` (for :class:`OtelTracing`)."""
    token = _ENQUEUE_CONTEXT.set(context)
    try:
        yield
    finally:
        _ENQUEUE_CONTEXT.reset(token)


def parse_tracing(section: Any) -> bool | None:
    """Validate the ``tracing`` section; returns ``enabled``: True, False, or None for
    ``"auto"`` (also when the section is absent)."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ConfigError("tracing", f"must be an object such as {{\"enabled\": true}}, got {type(section).__name__}")
    for key in section:
        if key != "enabled":
            raise ConfigError(f"tracing.{key}", "unknown key (expected: enabled)")
    enabled = section.get("enabled", "auto")
    if enabled == "auto":
        return None
    if not isinstance(enabled, bool):
        raise ConfigError("tracing.enabled", f"must be true, false or \"auto\", got {enabled!r}")
    return enabled


class SpanOutcome:
    """What a hook's block hands back to its span: ``record(outcome)`` (a no-op here)."""

    def record(self, outcome: Any) -> None:
        """Note how the traced step ended (enqueue results, a ``SendResult``, a callback result)."""


_NO_OUTCOME = SpanOutcome()


class _Nothing(contextlib.AbstractContextManager[Any]):
    """The no-op block of every hook: no generator, no allocation per call (hot paths call it)."""

    def __enter__(self) -> SpanOutcome:
        return _NO_OUTCOME

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


class Tracing:
    """The hooks otpagent calls along a message's way; this base class is tracing off.

    Every method is cheap and side-effect free here, so the agent and the dispatcher call them
    unconditionally.
    """

    enabled = False

    def enqueue(self, operation: str) -> AbstractContextManager[SpanOutcome]:
        """Around one enqueue call (``send_message``, ``send_otp``, ``send_bulk_messages``...)."""
        return _NOTHING

    def claimed(self, started_ns: int, ended_ns: int, count: int, worker_id: str) -> Claim | None:
        """A claim just brought ``count`` messages; what each one's ``process`` span will show."""
        return None

    def process(self, message: Message, claim: Claim | None) -> AbstractContextManager[Any]:
        """Around one worker step of a leased message (continues the message's trace)."""
        return _NOTHING

    def plan(self, planner: RoutePlanner, message: Message) -> list[str] | Unroutable:
        """The message's route from ``planner``, and (traced) why."""
        return planner.plan(message)

    def provider_call(self, message: Message, channel_name: str, kind: str) -> AbstractContextManager[SpanOutcome]:
        """Around one channel ``send``; ``record`` the ``SendResult`` (None: abandoned)."""
        return _NOTHING

    def events(self, events: Sequence[Event]) -> None:
        """State changes of the message in hand (fallback, retrying, sent...), as they are handed
        to storage, on the worker's thread (the outcome writer may commit them a moment later)."""

    def provider_callback(self, event: ProviderEvent,
                          find_message: Callable[[], Message | None]) -> AbstractContextManager[SpanOutcome]:
        """Around applying a provider's status report; linked to the message it is about."""
        return _NOTHING

    def server_request(self, method: str, path: str, scheme: str,
                       headers: Iterable[tuple[bytes, bytes]]) -> AbstractContextManager[SpanOutcome]:
        """Around one HTTP request to the service; ``record`` its status code."""
        return _NOTHING


#: Tracing off.
NO_TRACING = Tracing()


def build_tracing(enabled: bool | None, *, tracer_provider: Any = None, strategy: str = "",
                  strategy_label: str = "") -> Tracing:
    """The agent's tracing for ``tracing.enabled`` (see :func:`parse_tracing`): off, or
    OpenTelemetry (``tracer_provider``, else the global one).

    ``enabled: true`` without the ``otel`` extra is a :class:`~otpagent.extras.MissingExtra`
    naming it; ``"auto"`` never imports OpenTelemetry unless the app already has.
    """
    if enabled is False:
        return NO_TRACING
    if tracer_provider is None and enabled is None and not _app_configured_tracing():
        return NO_TRACING
    from otpagent.extras import require

    require("otel", "tracing (tracing.enabled)")
    from otpagent.tracing_otel import OtelTracing

    return OtelTracing(tracer_provider=tracer_provider, strategy=strategy, strategy_label=strategy_label)


def _app_configured_tracing() -> bool:
    """Whether the host app has set a global tracer provider (OpenTelemetry imported by it)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
