"""The postgres plugin: registration, config validation, migrations, and the agent end to end."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import importlib_metadata
import pluggy
import psycopg
import pytest

from otpagent import hookspecs
from otpagent.errors import ConfigError
from otpagent.plugins import build_registry
from otpagent.protocols import PluginContext
from otpagent_postgres.plugin import create_postgres_storage
from otpagent_postgres.schema import SCHEMA_VERSION
from tests.contract.backends import PG_DSN

pytestmark = pytest.mark.postgres


def _context(tmp_path: Path) -> PluginContext:
    return PluginContext(config_dir=tmp_path)


def test_the_installed_entry_point_registers_the_postgres_backend() -> None:
    pm = pluggy.PluginManager("otpagent")
    pm.add_hookspecs(hookspecs)
    (ep,) = [ep for ep in importlib_metadata.entry_points(group="otpagent") if ep.name == "postgres"]
    pm.register(ep.load(), name=ep.name)

    registry = build_registry(pm)

    assert registry.storage_backends["postgres"].factory is create_postgres_storage


@pytest.mark.parametrize(("settings", "path"), [
    ({}, "storage.dsn"),
    ({"dsn": ""}, "storage.dsn"),
    ({"dsn": PG_DSN, "schema": "bad-name; drop"}, "storage.schema"),
    ({"dsn": PG_DSN, "pool_max_size": 0}, "storage.pool_max_size"),
    ({"dsn": PG_DSN, "pool_min_size": 5, "pool_max_size": 2}, "storage.pool_max_size"),
    ({"dsn": PG_DSN, "path": "x.db"}, "storage.path"),
])
def test_bad_settings_name_the_offending_key(settings: dict[str, Any], path: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create_postgres_storage({"backend": "postgres", **settings}, _context(tmp_path))

    assert caught.value.path == path


def test_an_unreachable_server_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test"

    with pytest.raises(ConfigError) as caught:
        create_postgres_storage({"dsn": dsn, "connect_timeout_seconds": 1}, _context(tmp_path))

    assert caught.value.path == "storage.dsn"
    assert "cannot connect" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def _versions(schema: str) -> list[int]:
    with psycopg.connect(PG_DSN) as conn:
        return [r[0] for r in conn.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY version')]


def test_workers_starting_at_once_migrate_exactly_once(pg_schema: str, open_store: Any) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(10)
            open_store()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert _versions(pg_schema) == list(range(1, SCHEMA_VERSION + 1))


def test_reopening_a_migrated_schema_changes_nothing(pg_schema: str, open_store: Any) -> None:
    open_store().close()

    store = open_store()

    assert store.schema_version == SCHEMA_VERSION
    assert _versions(pg_schema) == list(range(1, SCHEMA_VERSION + 1))


def test_a_schema_from_a_newer_release_is_refused(pg_schema: str, open_store: Any, tmp_path: Path) -> None:
    open_store().close()
    with psycopg.connect(PG_DSN) as conn:
        conn.execute(f'INSERT INTO "{pg_schema}".schema_version (version) VALUES (99)')

    with pytest.raises(ConfigError, match="newer"):
        create_postgres_storage({"dsn": PG_DSN, "schema": pg_schema}, _context(tmp_path))


def test_the_agent_delivers_and_verifies_an_otp_on_postgres(pg_schema: str, tmp_path: Path) -> None:
    from otpagent import IntelligentOTPAgent
    from tests.conftest import Outbox, agent_config, wait_for

    config = agent_config(tmp_path, storage={"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema})
    outbox = Outbox(tmp_path / "outbox.jsonl")
    with IntelligentOTPAgent(config) as agent:
        agent.start_processing()
        message_id = agent.send_otp("+447700900123", user_id="u1")
        code = outbox.code_for(message_id, timeout=10)
        wrong = "000000" if code != "000000" else "111111"

        wrong_answer = agent.verify_otp("+447700900123", wrong)
        right_answer = agent.verify_otp("+447700900123", code)
        again = agent.verify_otp("+447700900123", code)
        assert wait_for(lambda: getattr(agent.get_delivery_report(message_id), "status", None) == "sent", timeout=10)
        report = agent.get_delivery_report(message_id)

    assert (wrong_answer[0], right_answer, again[0]) == (False, (True, "verified"), False)
    assert report is not None
    assert report.attempt_log[0].outcome.value == "accepted"


def test_codes_are_sealed_and_no_key_is_kept_on_postgres(pg_schema: str, tmp_path: Path) -> None:
    from otpagent import IntelligentOTPAgent
    from tests.conftest import Outbox, agent_config

    config = agent_config(tmp_path, storage={"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema})
    outbox = Outbox(tmp_path / "outbox.jsonl")
    with IntelligentOTPAgent(config) as agent:
        message_id = agent.send_otp("+447700900123")
        with psycopg.connect(PG_DSN) as conn:
            (queued,) = conn.execute(f'SELECT secret FROM "{pg_schema}".messages WHERE id = %s',
                                     (message_id,)).fetchone()
            state = dict(conn.execute(f'SELECT key, value FROM "{pg_schema}".state').fetchall())
        agent.start_processing()
        code = outbox.code_for(message_id, timeout=10)
        secret = agent.otp.keys.secret  # type: ignore[union-attr]
        fingerprint = agent.otp.keys.fingerprint  # type: ignore[union-attr]

    assert queued.startswith("enc1:") and code not in queued
    assert agent.otp.sealer.open(message_id, queued) == code  # type: ignore[union-attr]
    assert state.get("otp.key_fingerprint") == fingerprint
    assert "otp.server_key" not in state
    assert not any(secret.decode() in value for value in state.values())


def test_db_migrate_on_the_command_line_reports_the_version(pg_schema: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"storage": {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema},
                                  "channels": {"DEV": {"plugin": "console", "kind": "sms", "quiet": True}}}))
    otpagent = str(Path(sys.executable).with_name("otpagent"))
    env = {**os.environ, "OTPAGENT_LOAD_PLUGINS": "console,postgres"}

    done = subprocess.run([otpagent, "--config", str(config), "db", "migrate"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert f"schema '{pg_schema}' at version {SCHEMA_VERSION}" in done.stdout
    assert _versions(pg_schema) == list(range(1, SCHEMA_VERSION + 1))
