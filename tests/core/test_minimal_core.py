"""The library needs no web server, no terminal renderer: extras say what to install when needed.

Each check runs in a fresh interpreter. "Not installed" is simulated the way the import system
itself models a missing module: ``sys.modules[name] = None`` makes ``import name`` fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import agent_config

ROOT = Path(__file__).resolve().parents[2]
SERVER = ("starlette", "uvicorn", "prometheus_client", "httpx", "standardwebhooks", "httptools", "uvloop")
HEAVY = (*SERVER, "rich")


def run_python(code: str, *, block: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_importing_the_library_imports_no_server_rendering_or_provider_stack() -> None:
    code = """
import json
from otpagent import IntelligentOTPAgent
from otpagent.plugins import build_registry
build_registry()  # every installed plugin loaded, Twilio's, SendGrid's and PostgreSQL's included
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("starlette", "uvicorn", "prometheus_client", "httpx", "standardwebhooks", "rich",
                         "twilio", "sendgrid", "psycopg", "structlog", "email_validator", "phonenumbers",
                         "cryptography"))))
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_embedding_the_library_imports_no_server_stack(tmp_path: Path) -> None:
    config = json.dumps(agent_config(tmp_path))
    code = f"""
import json
from otpagent import IntelligentOTPAgent
with IntelligentOTPAgent(json.loads({config!r})) as agent:
    agent.start_processing()
    agent.send_message({{"phone_number": "+447700900123", "content": "hello"}})
    agent.send_otp("+447700900124")
    assert agent.wait_until_idle(30)
    agent.get_metrics()
print(json.dumps(sorted(m for m in {SERVER!r} if m in sys.modules)))
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_cryptography_is_imported_only_when_a_code_is_issued(tmp_path: Path) -> None:
    config = json.dumps(agent_config(tmp_path))
    code = f"""
import json
from otpagent import IntelligentOTPAgent
with IntelligentOTPAgent(json.loads({config!r})) as agent:
    agent.send_message({{"phone_number": "+447700900123", "content": "hello"}})
    agent.verify_otp("+447700900123", "123456")
    before = "cryptography" in sys.modules
    agent.send_otp("+447700900124")
    print(json.dumps([before, "cryptography" in sys.modules]))
"""
    result = run_python(code)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [False, True]


def test_the_library_works_without_any_extra_installed(tmp_path: Path) -> None:
    config = json.dumps(agent_config(tmp_path))
    code = f"""
import json
from otpagent import IntelligentOTPAgent
with IntelligentOTPAgent(json.loads({config!r})) as agent:
    agent.start_processing()
    message_id = agent.send_message({{"phone_number": "+447700900123", "content": "hello"}})
    assert agent.wait_until_idle(30)
    print(agent.get_delivery_report(message_id).status.value)
"""
    result = run_python(code, block=HEAVY)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent"


def cli(*args: str, block: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_python(f"sys.argv = ['otpagent', *{list(args)!r}]\nfrom otpagent.cli import main\nmain()",
                      block=block, cwd=cwd)


def test_commands_that_need_an_extra_say_which_to_install(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(agent_config(tmp_path)))

    serve = cli("serve", block=HEAVY, cwd=tmp_path)
    stats = cli("stats", block=HEAVY, cwd=tmp_path)
    send = cli("send", "--to", "+447700900123", "hello", block=HEAVY, cwd=tmp_path)

    assert serve.returncode == 2
    assert "otpagent serve needs the 'server' extra: pip install 'otpagent[server]'" in serve.stderr
    assert "Traceback" not in serve.stderr
    assert stats.returncode == 2 and "pip install 'otpagent[cli]'" in stats.stderr
    assert send.returncode == 0, send.stderr  # the core commands need no extra


def test_a_webhook_sink_without_its_extra_is_a_config_error_naming_the_sink(tmp_path: Path) -> None:
    config = agent_config(tmp_path, sinks=[{"plugin": "log"}, {
        "plugin": "webhook", "url": "https://hooks.example.com/otp", "secret": "whsec_" + "A" * 40}])
    code = f"""
import json
from otpagent import IntelligentOTPAgent
from otpagent.errors import ConfigError
try:
    IntelligentOTPAgent(json.loads({json.dumps(config)!r}))
except ConfigError as exc:
    print(exc)
"""
    result = run_python(code, block=("httpx", "standardwebhooks"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("config error at sinks[1].plugin: the webhook sink needs the 'webhooks' extra: "
                                     "pip install 'otpagent[webhooks]' (missing: httpx, standardwebhooks)")


def test_built_in_components_are_imported_only_when_a_config_uses_them(tmp_path: Path) -> None:
    unused = ("otpagent.testing.memory", "otpagent.routing.adaptive", "otpagent.routing.simple",
              "otpagent.fraud.guard", "otpagent_console.channel")
    code = f"""
import json
from otpagent import IntelligentOTPAgent
from otpagent.plugins import build_registry
registry = build_registry()
before = sorted(m for m in {unused!r} if m in sys.modules)
agent = IntelligentOTPAgent({{"storage": {{"backend": "sqlite", "path": "lazy.db"}},
                              "routing": {{"strategy": "adaptive"}}, "sinks": []}}, registry=registry)
agent.close()
print(json.dumps([before, sorted(m for m in {unused!r} if m in sys.modules)]))
"""
    result = run_python(code, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout)
    assert before == []
    # What the config asked for is there once the agent is built; the memory backend is not.
    assert after == ["otpagent.fraud.guard", "otpagent.routing.adaptive", "otpagent_console.channel"]


def test_a_lazy_factory_imports_its_module_on_the_first_call_and_names_a_bad_target() -> None:
    from otpagent.lazy import lazy
    from otpagent.settings import settings_class_of

    factory = lazy("otpagent.routing.simple:create_cheapest")
    assert repr(factory) == "<lazy factory otpagent.routing.simple:create_cheapest>"
    from otpagent.routing.simple import StrategyOnlySection, create_cheapest

    assert factory.load() is create_cheapest
    assert settings_class_of(factory) is StrategyOnlySection
    with pytest.raises(ValueError, match=r"package\.module:function"):
        lazy("otpagent.routing.simple.create_cheapest")
