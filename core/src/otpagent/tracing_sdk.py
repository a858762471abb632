"""For ``otpagent serve`` and ``otpagent run``: the OpenTelemetry SDK, set up from ``OTEL_*``.

A library never configures the SDK; a process that otpagent itself runs does, when the agent
traces (``tracing.enabled: true``) and nothing else has set a global tracer provider. It follows
the SDK's environment variables (docs/tracing.md):

- ``OTEL_TRACES_EXPORTER``: comma-separated exporter names, default ``otlp``; ``console`` prints
  spans; ``none`` exports nothing. ``otlp`` is OTLP over ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
  (or ``OTEL_EXPORTER_OTLP_PROTOCOL``), default ``http/protobuf``; the exporter itself reads
  ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._HEADERS`` and the rest. Any other name is looked up
  among the installed exporters (entry point group ``opentelemetry_traces_exporter``).
- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name default: ``otpagent``),
  ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*``: read by the SDK.
- ``OTEL_SDK_DISABLED=true``: set nothing up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from otpagent.errors import ConfigError
from otpagent.extras import MissingExtra
from otpagent.logs import get_logger
from otpagent.tracing import Tracing

__all__ = ["configure_sdk"]

log = get_logger("otpagent.tracing")

_GROUP = "opentelemetry_traces_exporter"
_OTLP = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http", "http/json": "otlp_json_http"}


def configure_sdk(tracing: Tracing, environ: Mapping[str, str] | None = None) -> bool:
    """Set the global tracer provider from ``OTEL_*`` if ``tracing`` is on and none is set;
    returns whether it did. An unknown exporter name is a :class:`ConfigError` naming the variable."""
    env = os.environ if environ is None else environ
    if not tracing.enabled or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False  # the host set one up: spans already go there
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise MissingExtra("otel", "exporting traces from otpagent serve/run", ["opentelemetry-sdk"]) from None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "otpagent"}))
    provider = TracerProvider(resource=resource)
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    for name in names:
        if name.lower() != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)
    log.info("tracing_configured", exporters=",".join(names), service=str(resource.attributes.get(SERVICE_NAME)))
    return True


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    entry = name
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        entry = _OTLP.get((protocol or "http/protobuf").strip().lower(), "")
        if not entry:
            raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL", f"unknown OTLP protocol {protocol!r} "
                                                             f"(expected one of {', '.join(_OTLP)})")
    found = metadata.entry_points(group=_GROUP, name=entry)
    if not found:
        installed = sorted(e.name for e in metadata.entry_points(group=_GROUP))
        raise ConfigError("OTEL_TRACES_EXPORTER", f"no span exporter {entry!r} is installed (installed: "
                                                  f"{', '.join(installed) or 'none'}; 'otlp' over http/protobuf "
                                                  "comes with otpagent[otel])")
    return next(iter(found)).load()()
