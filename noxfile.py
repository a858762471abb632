"""Development sessions: tests, lint, typecheck, demo, bench.

Every session installs the packages of this repository (core and every plugin under plugins/)
in editable mode into its own virtualenv, so the quick start needs nothing but Python and pip.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

ROOT = Path(__file__).parent
PLUGINS = sorted(str(p.parent) for p in ROOT.glob("plugins/otpagent_*/pyproject.toml"))
EXAMPLES = sorted(str(p.parent) for p in ROOT.glob("docs/examples/*/pyproject.toml"))
PACKAGES = ["./core[all]", *PLUGINS, *EXAMPLES]
TEST_DEPS = [
    "pytest>=8", "pytest-timeout>=2.3", "httpx>=0.27", "starlette>=0.37", "uvicorn>=0.29", "jsonschema>=4.21",
    "cryptography>=42", "schemathesis>=4.0", "playwright>=1.45",  # browser: Debian's /usr/bin/chromium
    "hatchling>=1.24",  # tests/core/broken_plugins.py builds real plugin packages offline (no build isolation)
    "pyyaml>=6",  # tests/service/test_monitoring.py reads deploy/'s Prometheus rules
    "opentelemetry-api>=1.27", "opentelemetry-sdk>=1.27",  # tests/tracing: spans in the SDK's in-memory exporter
]


def install_packages(session: nox.Session, *extra: str) -> None:
    args: list[str] = []
    for package in PACKAGES:
        args += ["-e", package]
    session.install(*args, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (core, plugins, storage contract on SQLite and PostgreSQL)."""
    install_packages(session, *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, bugs, security smells, import order."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "core", "plugins", "tests", "bench", "docs/examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the core."""
    install_packages(session, "mypy>=1.10", *TEST_DEPS)
    session.run("mypy", "core/src", *[f"{p}/src" for p in (*PLUGINS, *EXAMPLES)], "bench")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: SQLite queue + console channels."""
    session.install("-e", "./core[cli]", "-e", "./plugins/otpagent_console")
    session.run("otpagent", "demo", *session.posargs)


#: The queues people would pick instead, measured beside otpagent by the ``peers-*`` parts (pinned, so a
#: figure is always against the version printed beside it), and py-spy for ``python -m bench.peers.profile``.
#: Installed in the bench sessions only, never as a dependency of otpagent.
BENCH_PEERS = [
    "pgqueuer==1.6.0", "asyncpg==0.32.0", "procrastinate==3.10.0", "huey==3.5.4", "redis==8.1.0",
    "dramatiq[redis]==2.2.1", "celery[redis]==5.7.0", "py-spy==0.4.3",
]


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: throughput, latency and memory with ratios to same-run baselines (and to peers)."""
    install_packages(session, *TEST_DEPS, *BENCH_PEERS)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """The benchmark smoke tests with the peers installed, so their drivers run too (tiny sizes)."""
    install_packages(session, *TEST_DEPS, *BENCH_PEERS)
    session.run("pytest", "tests/bench", "-m", "peers or not peers", *session.posargs)
