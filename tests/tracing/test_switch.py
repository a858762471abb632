"""When tracing is on, off or missing; its config; the SDK set-up of ``serve``/``run``; masking.

Whatever touches the process-wide tracer provider runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otpagent.errors import ConfigError
from otpagent.tracing import parse_tracing
from otpagent.tracing_otel import mask_recipient, mask_text
from tests.conftest import agent_config

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, *, block: tuple[str, ...] = (), env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**environ, **(env or {})})


def _send_and_work(config: dict[str, object]) -> str:
    """Code that sends an OTP and a message through a worker, then prints what it reports."""
    return f"""
import json
from otpagent import IntelligentOTPAgent
with IntelligentOTPAgent(json.loads({json.dumps(config)!r})) as agent:
    agent.start_processing()
    agent.send_message({{"phone_number": "+447700900123", "content": "hello"}})
    agent.send_otp("+447700900124")
    assert agent.wait_until_idle(30)
    stored = [m.trace_context for m in agent.storage.recent_messages(10)]
"""


@pytest.mark.parametrize("tracing", [None, {"enabled": "auto"}, {"enabled": False}])
def test_with_tracing_off_opentelemetry_is_never_imported(tmp_path: Path, tracing: dict[str, object] | None) -> None:
    config = agent_config(tmp_path, **({"tracing": tracing} if tracing is not None else {}))
    code = _send_and_work(config) + """
print(json.dumps([stored, sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")]))
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[None, None], []]


def test_tracing_on_without_the_extra_says_which_to_install(tmp_path: Path) -> None:
    config = agent_config(tmp_path, tracing={"enabled": True})
    code = f"""
import json
from otpagent import IntelligentOTPAgent
from otpagent.extras import MissingExtra
try:
    IntelligentOTPAgent(json.loads({json.dumps(config)!r}))
except MissingExtra as exc:
    print(exc)
"""
    result = run_python(code, block=("opentelemetry",))

    assert result.returncode == 0, result.stderr
    assert "pip install 'otpagent[otel]'" in result.stdout
    assert "tracing (tracing.enabled)" in result.stdout


def test_auto_traces_when_the_app_set_a_tracer_provider_first(tmp_path: Path) -> None:
    config = agent_config(tmp_path)  # no tracing section: "auto"
    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
""" + _send_and_work(config) + """
print(json.dumps([sorted({s.name for s in exporter.get_finished_spans()}), [bool(c) for c in stored]]))
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    names, stored = json.loads(result.stdout)
    assert {"send_message otpagent", "send_otp otpagent", "process otpagent", "otpagent route"} <= set(names)
    assert stored == [True, True]


def test_serve_and_run_export_spans_as_the_otel_variables_say(tmp_path: Path) -> None:
    config = agent_config(tmp_path, tracing={"enabled": True})
    code = """
from opentelemetry import trace
from otpagent.tracing_sdk import configure_sdk
""" + _send_and_work(config).replace("    agent.start_processing()\n",
                                     "    assert configure_sdk(agent.tracing)\n"
                                     "    assert not configure_sdk(agent.tracing)  # once per process\n"
                                     "    agent.start_processing()\n") + """
trace.get_tracer_provider().shutdown()
"""
    result = run_python(code, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_RESOURCE_ATTRIBUTES": "deployment=test"})

    assert result.returncode == 0, result.stderr
    assert '"name": "process otpagent"' in result.stdout
    assert '"service.name": "otpagent"' in result.stdout
    assert '"deployment": "test"' in result.stdout


@pytest.mark.parametrize(("env", "named"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin-of-dreams"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_an_unknown_exporter_is_an_error_naming_the_variable(tmp_path: Path, env: dict[str, str],
                                                             named: str) -> None:
    config = agent_config(tmp_path, tracing={"enabled": True})
    code = f"""
import json
from otpagent import IntelligentOTPAgent
from otpagent.errors import ConfigError
from otpagent.tracing_sdk import configure_sdk
with IntelligentOTPAgent(json.loads({json.dumps(config)!r})) as agent:
    try:
        configure_sdk(agent.tracing)
    except ConfigError as exc:
        print(exc.path)
"""
    result = run_python(code, env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == named


def test_the_sdk_is_left_alone_when_tracing_is_off_or_disabled(tmp_path: Path) -> None:
    on, off = agent_config(tmp_path, tracing={"enabled": True}), agent_config(tmp_path, tracing={"enabled": False})
    code = f"""
import json
from otpagent import IntelligentOTPAgent
from otpagent.tracing_sdk import configure_sdk
with IntelligentOTPAgent(json.loads({json.dumps(off)!r})) as agent:
    print(configure_sdk(agent.tracing))
with IntelligentOTPAgent(json.loads({json.dumps(on)!r})) as agent:
    print(configure_sdk(agent.tracing, {{"OTEL_SDK_DISABLED": "true"}}))
print("opentelemetry.sdk.trace" in sys.modules)
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


@pytest.mark.parametrize(("section", "expected"), [
    (None, None), ({}, None), ({"enabled": "auto"}, None), ({"enabled": True}, True), ({"enabled": False}, False),
])
def test_the_tracing_section(section: object, expected: bool | None) -> None:
    assert parse_tracing(section) == expected


@pytest.mark.parametrize(("section", "path"), [
    ({"enabled": "yes"}, "tracing.enabled"), ({"enabled": 1}, "tracing.enabled"),
    ({"exporter": "otlp"}, "tracing.exporter"), (["enabled"], "tracing"),
])
def test_a_bad_tracing_section_names_the_key(tmp_path: Path, section: object, path: str) -> None:
    from otpagent.config import parse_config

    with pytest.raises(ConfigError) as raised:
        parse_config(agent_config(tmp_path, tracing=section))

    assert raised.value.path == path


def test_masking_keeps_what_tells_things_apart_and_hides_numbers_codes_and_addresses() -> None:
    assert mask_recipient("+447700900123") == "+44********23"
    assert mask_recipient("someone@example.com") == "***@example.com"
    assert mask_recipient("+1234") == "*****"
    assert mask_text("The 'To' number +44 7700 900123 is not a valid phone number.") == \
        "The 'To' number " + "*" * len("+44 7700 900123") + " is not a valid phone number."
    assert mask_text("code 482913 rejected; HTTP 400") == "code ****** rejected; HTTP 400"
    assert mask_text("bounced: jane.doe@example.com") == "bounced: ***@example.com"
    assert mask_text("cannot reach https://user:hunter2@gw.example/send") == \
        "cannot reach https://user:***@gw.example/send"
    assert mask_text("dsn host=db password=s3cret-pw") == "dsn host=db password=***"
