"""The OpenTelemetry side of :mod:`otpagent.tracing` (needs the ``otel`` extra).

Spans, and the semantic-convention attributes they carry where OpenTelemetry defines them
(``messaging.*``, ``http.*``, ``error.type``); otpagent's own under ``otpagent.*``:

- ``{operation} otpagent`` (PRODUCER): one enqueue call (``send_message``, ``send_otp``,
  ``send_bulk_messages``, ``load_messages_from_json``). Its W3C context is stored with each
  message it queued.
- ``process otpagent`` (CONSUMER): one worker step of one message, the child of that stored
  context and linked to it; it starts when the claim that leased the message started, so its
  ``receive otpagent`` child (the claim) shows how long that took. Span events record what the
  step did: ``retrying``, ``fallback`` (from, to, why), ``sent``, ``failed``...
- ``otpagent route`` (INTERNAL): the routing decision: the route, who decided its order
  (the request's channel list, the strategy, the preferred channel) and why each other channel
  was left out.
- ``send {channel}`` (CLIENT): one provider call: channel, kind, provider message id, outcome.
- ``{source} callback`` (INTERNAL): a provider status report, linked to its message's trace.
- ``{METHOD}`` (SERVER): an HTTP request to ``otpagent serve``, continuing the caller's
  ``traceparent`` (unless the host app's own instrumentation already started a span).

Never in an attribute: OTP codes, message bodies, credentials, or a full phone number or email
address (:func:`mask_recipient`; free text such as provider error reasons goes through
:func:`mask_text`, which hides every run of four or more digits and every email address).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otpagent.redact import redacted
from otpagent.tracing import SpanOutcome, Tracing, carrying

if TYPE_CHECKING:
    from otpagent.model import Event, Message, SendResult
    from otpagent.protocols import ProviderEvent, ProviderEventResult
    from otpagent.routing.planner import RoutePlanner, Unroutable

__all__ = ["Claim", "OtelTracing", "mask_recipient", "mask_text"]

#: ``messaging.system`` and ``messaging.destination.name`` of otpagent's queue.
SYSTEM = "otpagent"
DESTINATION = "otpagent"

#: W3C Trace Context only (``traceparent``, ``tracestate``): never baggage, which may hold
#: anything and would be stored with the message.
_PROPAGATOR = TraceContextTextMapPropagator()

_DIGITS = re.compile(r"\+?\d(?:[\d .()/-]{2,}\d)")  # 4+ digits, with the separators numbers have
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
#: Event data worth a span event attribute; free text among it is masked.
_EVENT_KEYS = ("channel", "from", "to", "reason", "retry_in", "provider_message_id", "error_code", "circuit")
_FREE_TEXT = frozenset({"reason"})
#: Events of the message in hand that a span records (``attempt`` is the provider call span).
_STEP_EVENTS = frozenset({"retrying", "fallback", "sent", "failed", "expired", "undelivered", "delivered",
                          "queued", "cancelled"})


def mask_text(text: str) -> str:
    """``text`` with every run of 4+ digits (phone numbers, OTP codes), every email address and
    every password in a URL or connection string masked."""
    text = _EMAIL.sub(lambda m: f"***@{m.group(1)}", str(redacted(text)))
    return _DIGITS.sub(lambda m: "*" * len(m.group(0)), text)


def mask_recipient(recipient: str) -> str:
    """A phone number as ``+44*******23`` (country code and last two digits), an email address
    as ``***@example.com``: enough to tell recipients apart in a trace, not to contact them."""
    if "@" in recipient:
        return "***@" + recipient.rsplit("@", 1)[1]
    if len(recipient) <= 6:
        return "*" * len(recipient)
    return recipient[:3] + "*" * (len(recipient) - 5) + recipient[-2:]


@attrs.frozen
class Claim:
    """When the claim that leased a message started and ended (ns since the epoch), how many
    messages it brought and for which worker: the ``receive`` child of each ``process`` span."""

    started_ns: int
    ended_ns: int
    count: int
    worker_id: str


def _messaging(operation_type: str, operation_name: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.destination.name": DESTINATION,
            "messaging.operation.type": operation_type, "messaging.operation.name": operation_name}


def _version() -> str:
    try:
        return metadata.version("otpagent")
    except metadata.PackageNotFoundError:  # a source tree without metadata
        return "0"


def _failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: its type only, never its text (it may quote a recipient)."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(StatusCode.ERROR, type(exc).__name__)


@contextlib.contextmanager
def _failing(span: Span) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        _failed(span, exc)
        raise


class _Enqueued(SpanOutcome):
    def __init__(self, span: Span) -> None:
        self.span = span

    def record(self, outcome: Any) -> None:
        ids: Sequence[str] = [outcome] if isinstance(outcome, str) else list(outcome)
        self.span.set_attribute("messaging.batch.message_count", len(ids))
        if len(ids) == 1:
            self.span.set_attribute("messaging.message.id", ids[0])


class _ProviderCall(SpanOutcome):
    def __init__(self, span: Span) -> None:
        self.span = span

    def record(self, outcome: Any) -> None:
        result: SendResult | None = outcome
        span = self.span
        if result is None:
            span.set_attribute("otpagent.outcome", "abandoned")
            span.set_attribute("error.type", "timeout")
            span.set_status(StatusCode.ERROR, "the channel overran its timeout; the call was abandoned")
            return
        span.set_attribute("otpagent.outcome", result.outcome.value)
        if result.provider_message_id:
            span.set_attribute("otpagent.provider.message_id", result.provider_message_id)
        if result.ok:
            return
        span.set_attribute("error.type", result.code or result.outcome.value)
        span.set_attribute("otpagent.failure.scope", result.scope.value)
        if result.code:
            span.set_attribute("otpagent.error.code", result.code)
        if result.reason:
            span.set_attribute("otpagent.error.reason", mask_text(result.reason))
        span.set_status(StatusCode.ERROR, f"{result.outcome.value} failure")


class _Callback(SpanOutcome):
    def __init__(self, span: Span) -> None:
        self.span = span

    def record(self, outcome: Any) -> None:
        result: ProviderEventResult = outcome
        self.span.set_attribute("otpagent.callback.outcome", result.outcome.value)
        self.span.set_attribute("otpagent.callback.message_updated", bool(result.message_updated))


class _HttpResponse(SpanOutcome):
    def __init__(self, span: Span) -> None:
        self.span = span

    def record(self, outcome: Any) -> None:
        status = int(outcome)
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_attribute("error.type", str(status))
            self.span.set_status(StatusCode.ERROR)


def creation_context(message: Message) -> SpanContext | None:
    """The span context of the enqueue that created ``message`` (None: it was not traced)."""
    if not message.trace_context:
        return None
    found = trace.get_current_span(_PROPAGATOR.extract(dict(message.trace_context))).get_span_context()
    return found if found.is_valid else None


class OtelTracing(Tracing):
    """Tracing on: spans through ``tracer_provider`` (default: the global one, via the API)."""

    enabled = True

    def __init__(self, *, tracer_provider: Any = None, strategy: str = "", strategy_label: str = "") -> None:
        self.tracer = trace.get_tracer("otpagent", _version(), tracer_provider=tracer_provider)
        self.strategy = strategy
        self.strategy_label = strategy_label

    # -- enqueue -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def enqueue(self, operation: str) -> Iterator[SpanOutcome]:
        with self.tracer.start_as_current_span(f"{operation} {DESTINATION}", kind=SpanKind.PRODUCER,
                                               attributes=_messaging("send", operation), record_exception=False,
                                               set_status_on_exception=False) as span, _failing(span):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            with carrying(carrier or None):
                yield _Enqueued(span)

    # -- workers -------------------------------------------------------------------------------
    def claimed(self, started_ns: int, ended_ns: int, count: int, worker_id: str) -> Claim | None:
        return Claim(started_ns=started_ns, ended_ns=ended_ns, count=count, worker_id=worker_id)

    @contextlib.contextmanager
    def process(self, message: Message, claim: Claim | None) -> Iterator[None]:
        creation = creation_context(message)
        # The child of the enqueue (one trace from the API request to the provider), and linked
        # to it as the messaging conventions ask of a consumer; a root span when not traced.
        parent = trace.set_span_in_context(trace.NonRecordingSpan(creation)) if creation else otel_context.Context()
        links = [Link(creation, {"otpagent.link": "creation"})] if creation else []
        attributes = {**_messaging("process", "process"), "messaging.message.id": message.id,
                      "otpagent.message.type": message.message_type.value,
                      "otpagent.message.priority": message.priority.name,
                      "otpagent.attempt_count": message.attempt_count}
        if claim is not None:
            attributes["messaging.client.id"] = claim.worker_id
        with self.tracer.start_as_current_span(f"process {DESTINATION}", context=parent, kind=SpanKind.CONSUMER,
                                               links=links, attributes=attributes,
                                               start_time=claim.started_ns if claim else None,
                                               record_exception=False, set_status_on_exception=False) as span, \
                _failing(span):
            if claim is not None:
                receive = self.tracer.start_span(
                    f"receive {DESTINATION}", kind=SpanKind.CLIENT, start_time=claim.started_ns,
                    attributes={**_messaging("receive", "claim_due"), "messaging.batch.message_count": claim.count,
                                "messaging.client.id": claim.worker_id})
                receive.end(end_time=claim.ended_ns)
            yield

    def plan(self, planner: RoutePlanner, message: Message) -> list[str] | Unroutable:
        from otpagent.routing.planner import Unroutable

        with self.tracer.start_as_current_span("otpagent route", record_exception=False,
                                               set_status_on_exception=False) as span, _failing(span):
            route = planner.plan(message)
            if not span.is_recording():
                return route
            span.set_attribute("otpagent.routing.strategy", self.strategy)
            span.set_attribute("otpagent.routing.strategy.plugin", self.strategy_label)
            if message.preferred_channel:
                span.set_attribute("otpagent.route.preferred_channel", message.preferred_channel)
            if isinstance(route, Unroutable):
                span.set_attribute("otpagent.route.excluded", _reasons(route.reasons))
                span.set_attribute("error.type", "unroutable")
                span.set_status(StatusCode.ERROR, "no channel can deliver this message")
                return route
            span.set_attribute("otpagent.route", route)
            span.set_attribute("otpagent.route.chosen", route[0])
            span.set_attribute("otpagent.route.decided_by", _decided_by(message))
            excluded = planner.reasons_unusable(message, message.envelope(), check_circuits=True)
            if excluded:
                span.set_attribute("otpagent.route.excluded", _reasons(excluded))
            return route

    @contextlib.contextmanager
    def provider_call(self, message: Message, channel_name: str, kind: str) -> Iterator[SpanOutcome]:
        attributes: dict[str, Any] = {"otpagent.channel": channel_name, "otpagent.channel.kind": kind,
                                      "messaging.message.id": message.id,
                                      "otpagent.attempt.number": message.attempt_count + 1,
                                      "otpagent.recipient": mask_recipient(message.recipient)}
        with self.tracer.start_as_current_span(f"send {channel_name}", kind=SpanKind.CLIENT, attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as span, \
                _failing(span):
            yield _ProviderCall(span)

    def events(self, events: Sequence[Event]) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        for event in events:
            if event.type in _STEP_EVENTS:
                span.add_event(f"otpagent.{event.type}", _event_attributes(event.data))
                span.set_attribute("otpagent.step", event.type)

    # -- provider callbacks and HTTP -----------------------------------------------------------
    @contextlib.contextmanager
    def provider_callback(self, event: ProviderEvent,
                          find_message: Callable[[], Message | None]) -> Iterator[SpanOutcome]:
        message = _quietly(find_message)
        creation = creation_context(message) if message is not None else None
        attributes: dict[str, Any] = {"otpagent.callback.source": event.source,
                                      "otpagent.provider.message_id": event.provider_message_id,
                                      "otpagent.delivery.status": event.status.value}
        if event.error_code:
            attributes["otpagent.error.code"] = event.error_code
        if message is not None:
            attributes["messaging.message.id"] = message.id
        links = [Link(creation, {"otpagent.link": "message"})] if creation else []
        with self.tracer.start_as_current_span(f"{event.source} callback", links=links, attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as span, \
                _failing(span):
            yield _Callback(span)

    @contextlib.contextmanager
    def server_request(self, method: str, path: str, scheme: str,
                       headers: Iterable[tuple[bytes, bytes]]) -> Iterator[SpanOutcome]:
        """Around one HTTP request to the service, continuing the caller's W3C trace context
        (unless a span is already current: the host app's instrumentation did that)."""
        if trace.get_current_span().get_span_context().is_valid:
            yield SpanOutcome()
            return
        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers
                   if k.lower() in (b"traceparent", b"tracestate")}
        parent = _PROPAGATOR.extract(carrier)
        attributes = {"http.request.method": method, "url.path": path, "url.scheme": scheme}
        with self.tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as span, \
                _failing(span):
            yield _HttpResponse(span)


def _reasons(reasons: Mapping[str, str]) -> list[str]:
    return [f"{name}: {mask_text(why)}" for name, why in reasons.items()]


def _decided_by(message: Message) -> str:
    """Who ordered the route: the request's own channel list, or the strategy (with the
    request's preferred channel moved first)."""
    if message.channels:
        return "request.channels"
    return "strategy+preferred_channel" if message.preferred_channel else "strategy"


def _event_attributes(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _EVENT_KEYS:
        value = data.get(key)
        if isinstance(value, str | int | float | bool) and value is not None:
            out[f"otpagent.{key}"] = mask_text(value) if key in _FREE_TEXT and isinstance(value, str) else value
    return out


def _quietly(find: Callable[[], Message | None]) -> Message | None:
    """The message a callback is about, for the link only: a failed read never fails the callback."""
    try:
        return find()
    except Exception:
        return None
