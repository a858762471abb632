"""Upgrading an embedded database an older otpagent made: its in-store HMAC key moves to the key
file, its clear queued codes are sealed, outstanding codes still verify, and neither the key
nor a code is left in the database files. Then ``otpagent otp reset-key``, on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otpagent import ConfigError, IntelligentOTPAgent, MessageType, Priority, Status
from otpagent.otp_keys import FINGERPRINT_STATE
from otpagent.storage.rows import MESSAGE_COLUMNS, message_to_row
from otpagent.storage.sqlite_schema import migrate
from otpagent.testing import make_message
from tests.conftest import Outbox, agent_config, wait_for

PHONE = "+447700900123"
LEGACY_KEY = "4f" * 32  # what the older otpagent kept in state: secrets.token_hex(32)
OUTSTANDING = "271828"  # a code issued before the upgrade, not yet verified
QUEUED = "314159"  # a code issued before the upgrade, its message not yet sent


def legacy_database(db: Path) -> str:
    """A schema-2 database as otpagent before sealed codes left it; returns the queued message id."""
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn, up_to=2)
        conn.execute("INSERT INTO state (key, value) VALUES ('otp.server_key', ?)", (LEGACY_KEY,))
        code_hash = hmac.new(LEGACY_KEY.encode(), f"{PHONE}\x00login\x00{OUTSTANDING}".encode(), hashlib.sha256)
        conn.execute("INSERT INTO otps (id, recipient, purpose, code_hash, created_at, expires_at) "
                     "VALUES ('otp1', ?, 'login', ?, ?, ?)", (PHONE, code_hash.digest(), now, now + 300))
        conn.execute("INSERT INTO otp_failures (recipient, failures, first_failure_at) VALUES (?, 4, ?)", (PHONE, now))
        message = make_message(message_type=MessageType.OTP, priority=Priority.HIGH, secret=QUEUED, now=now,
                               phone_number="+447700900124", body="Your code is {code}.", expires_at=now + 300)
        # The columns a schema-2 table has (later migrations added some, e.g. trace_context).
        existing = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        columns = [c for c in MESSAGE_COLUMNS if c in existing]
        conn.execute(f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})",
                     {c: v for c, v in message_to_row(message, None).items() if c in existing})
    return message.id


def raw_files(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def test_a_legacy_database_moves_its_key_out_and_seals_its_codes(tmp_path: Path) -> None:
    db = tmp_path / "otpagent.db"
    queued = legacy_database(db)
    assert LEGACY_KEY.encode() in raw_files(db) and QUEUED.encode() in raw_files(db)  # what an old copy gave away
    outbox = Outbox(tmp_path / "outbox.jsonl")

    with IntelligentOTPAgent(agent_config(tmp_path)) as agent:
        key_file = tmp_path / "otpagent.key"
        stored = agent.storage.get_message(queued).secret
        legacy_state = agent.capabilities.shared_state.get_state("otp.server_key")
        after_start = raw_files(db)
        verified = agent.verify_otp(PHONE, OUTSTANDING)
        agent.start_processing()
        sent = outbox.code_for(queued)
        assert wait_for(lambda: agent.get_delivery_report(queued).status is Status.SENT)

    assert key_file.read_text().strip() == LEGACY_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert legacy_state is None
    assert stored is not None and stored.startswith("enc1:")
    assert LEGACY_KEY.encode() not in after_start, "the legacy key is gone from the database files"
    assert QUEUED.encode() not in after_start, "the clear queued code is gone from the database files"
    assert verified == (True, "verified"), "a code issued before the upgrade still verifies"
    assert sent == QUEUED, "the queued code goes out as it was issued"


def test_a_second_worker_of_a_migrated_store_needs_the_moved_key(tmp_path: Path) -> None:
    legacy_database(tmp_path / "otpagent.db")
    with IntelligentOTPAgent(agent_config(tmp_path)):
        pass
    elsewhere = tmp_path / "worker-2" / "otpagent.key"
    elsewhere.parent.mkdir()

    with pytest.raises(ConfigError) as caught:
        IntelligentOTPAgent(agent_config(tmp_path, otp={"key_file": str(elsewhere)}))

    assert "copy the key file of a worker that runs" in caught.value.reason
    assert not elsewhere.exists()


def otpagent(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otpagent.cli", "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_reset_key_makes_the_workers_key_the_stores_on_purpose(tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(json.dumps(agent_config(tmp_path, otp={"key_file": "first.key"})))
    second = tmp_path / "second.json"
    second.write_text(json.dumps(agent_config(tmp_path, otp={"key_file": "second.key"})))
    outbox = Outbox(tmp_path / "outbox.jsonl")
    with IntelligentOTPAgent(str(first)) as agent:
        old_fingerprint = agent.otp.keys.fingerprint  # type: ignore[union-attr]
        issued = agent.send_otp(PHONE)
        agent.start_processing()
        code = outbox.code_for(issued)
        agent.stop_processing()
        queued = agent.send_otp("+447700900124")  # sealed under the old key, not sent yet

    declined = otpagent(second, "otp", "reset-key", stdin="n\n")
    refused = otpagent(second, "otp", "send", PHONE)
    reset = otpagent(second, "otp", "reset-key", "--yes")
    again = otpagent(second, "otp", "reset-key", "--yes")
    with IntelligentOTPAgent(str(second)) as agent:
        new_fingerprint = agent.otp.keys.fingerprint  # type: ignore[union-attr]
        old_code = agent.verify_otp(PHONE, code)
        agent.start_processing()
        assert wait_for(lambda: agent.get_delivery_report(queued).status is Status.FAILED)
        failed = agent.get_delivery_report(queued)
    old_worker = otpagent(first, "otp", "send", PHONE)

    assert declined.returncode == 1 and "Aborted" in declined.stderr
    assert refused.returncode == 2 and "otpagent otp reset-key" in refused.stderr and "Traceback" not in refused.stderr
    assert reset.returncode == 0, reset.stderr
    assert f"now expects the OTP key {new_fingerprint}" in reset.stdout
    assert f"it expected {old_fingerprint}" in reset.stdout
    assert again.returncode == 0 and "already expects this key" in again.stdout
    assert (tmp_path / "second.key").exists()
    assert old_code == (False, "invalid"), "codes issued under the old key stop verifying"
    assert "does not open with this worker's OTP key" in (failed.last_error or "")
    assert outbox.for_message(queued) == []
    assert old_worker.returncode == 2 and f"fingerprint {new_fingerprint}" in old_worker.stderr
    with sqlite3.connect(tmp_path / "otpagent.db") as conn:
        (recorded,) = conn.execute("SELECT value FROM state WHERE key = ?", (FINGERPRINT_STATE,)).fetchone()
    assert recorded == new_fingerprint
