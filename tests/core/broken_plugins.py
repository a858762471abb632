"""Deliberately broken otpagent plugin packages, built and installed for real with pip.

Each package is a real ``pyproject.toml`` (hatchling, like this repository's own packages) and
module declaring an ``otpagent`` entry point; :func:`install_broken_plugins` installs them all
into one directory with ``pip install --target`` (no index, no build isolation: offline, a few
seconds). A test puts that directory on ``PYTHONPATH`` and picks packages with
``OTPAGENT_LOAD_PLUGINS``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import attrs

__all__ = ["PACKAGES", "BrokenPackage", "install_broken_plugins"]


@attrs.frozen
class BrokenPackage:
    distribution: str
    version: str
    #: The entry point's name (also the plugin's name in ``otpagent plugins``).
    entry_point: str
    source: str

    @property
    def module(self) -> str:
        return self.distribution.replace("-", "_")


PACKAGES = {p.distribution: p for p in (
    BrokenPackage("acme-importfail", "0.3.0", "acme-importfail", '''\
        """A channel whose SDK is not installed: importing it raises ModuleNotFoundError (line 2)."""
        import acme_sdk_not_installed
    '''),
    BrokenPackage("acme-syntax", "0.1.0", "acme-syntax", '''\
        """A module that does not parse: SyntaxError on line 3."""

        def otpagent_register_channels(register:
    '''),
    BrokenPackage("acme-typo", "0.2.0", "acme-typo", '''\
        """A misspelt hook name: without a check it would register nothing, silently."""
        from otpagent.hookspecs import hookimpl

        @hookimpl
        def otpagent_register_chanels(register):
            register("typo", object)
    '''),
    BrokenPackage("acme-fax", "1.0.0", "acme-fax", '''\
        """Registers a channel, then raises while registering (line 9)."""
        from otpagent.hookspecs import hookimpl

        def create_fax(spec):
            raise AssertionError("never built: the plugin failed while registering")

        @hookimpl
        def otpagent_register_channels(register):
            register("acme-fax", create_fax)
            raise RuntimeError("fax modem not found")
    '''),
    BrokenPackage("acme-console", "1.2.0", "acme-console", '''\
        """Registers names that otpagent-console and a built-in already register."""
        from otpagent.hookspecs import hookimpl

        def create_console(spec):
            raise AssertionError("never built: the name clashes")

        def create_log_sink(settings, context):
            raise AssertionError("never built: the name clashes")

        @hookimpl
        def otpagent_register_channels(register):
            register("console", create_console)

        @hookimpl
        def otpagent_register_event_sinks(register):
            register("log", create_log_sink)
    '''),
    BrokenPackage("acme-sms", "1.0.2", "acme-sms", '''\
        """Factories that return the wrong thing."""
        from otpagent.hookspecs import hookimpl

        def create_nothing(spec):
            return None

        def create_text(spec):
            return "a channel, honest"

        @hookimpl
        def otpagent_register_channels(register):
            register("acme-sms", create_nothing)
            register("acme-sms-text", create_text)
    '''),
)}


def _write_package(root: Path, package: BrokenPackage) -> Path:
    project = root / package.distribution
    (project / package.module).mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["hatchling>=1.24"]
        build-backend = "hatchling.build"

        [project]
        name = "{package.distribution}"
        version = "{package.version}"

        [project.entry-points.otpagent]
        {package.entry_point} = "{package.module}"

        [tool.hatch.build.targets.wheel]
        packages = ["{package.module}"]
    """))
    (project / package.module / "__init__.py").write_text(textwrap.dedent(package.source))
    return project


def install_broken_plugins(workdir: Path) -> Path:
    """Build and install every package of :data:`PACKAGES` into ``workdir/site``; returns it."""
    sources = [_write_package(workdir / "src", p) for p in PACKAGES.values()]
    site = workdir / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(site), *map(str, sources)],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stderr
    return site
