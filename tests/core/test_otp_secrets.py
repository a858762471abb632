"""No clear code at rest and no key in the database: what a copy of the files gives away, the
key file, a fleet's key, sealed codes that do not open, and every state that drops the code.

The finding: the clear code sat in ``messages.secret`` for the code's lifetime and the HMAC key
(``otp.server_key``) in the same database, so a copy of ``otpagent.db`` and its WAL gave away
every live code.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from otpagent import ConfigError, IntelligentOTPAgent, Status
from otpagent.otp_keys import FINGERPRINT_STATE, fingerprint
from otpagent.protocols import ProviderEvent
from tests.conftest import FakeClock, Outbox, agent_config, wait_for

PHONES = ["+447700900123", "+447700900124", "+447700900125"]


def raw_files(db: Path) -> bytes:
    """Every byte a copy of the database would hold: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def aead_key(secret: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"otpagent otp code sealing v1").derive(secret)


def key_material(agent: IntelligentOTPAgent) -> list[bytes]:
    """The master secret (also the HMAC key), as written in the key file and raw, and the sealing key."""
    secret = agent.otp.keys.secret  # type: ignore[union-attr]
    return [secret, secret.hex().encode(), aead_key(secret)]


def test_a_copy_of_the_database_and_its_wal_holds_no_live_code_and_no_key(make_agent, outbox, tmp_path):
    agent = make_agent()
    db = tmp_path / "otpagent.db"
    ids = [agent.send_otp(phone) for phone in PHONES]
    stored = [agent.storage.get_message(i).secret for i in ids]
    # Test-only: open the sealed codes in memory, as a worker does, to know what to look for.
    codes = [agent.otp.sealer.open(i, s) for i, s in zip(ids, stored, strict=True)]  # type: ignore[union-attr]
    keys = key_material(agent)

    queued = raw_files(db)
    agent.start_processing()
    assert agent.wait_until_idle(10)
    assert [outbox.code_for(i) for i in ids] == codes
    sent = raw_files(db)
    assert [agent.verify_otp(p, c) for p, c in zip(PHONES, codes, strict=True)] == [(True, "verified")] * 3
    verified = raw_files(db)

    assert all(s is not None and s.startswith("enc1:") for s in stored)
    for moment, data in (("queued", queued), ("sent", sent), ("verified", verified)):
        for code in codes:
            assert code.encode() not in data, f"a live code is in the database files once {moment}"
        for key in keys:
            assert key not in data, f"key material is in the database files once {moment}"
    assert agent.capabilities.shared_state.get_state(FINGERPRINT_STATE) == agent.otp.keys.fingerprint  # type: ignore[union-attr]


def test_the_key_file_is_created_once_with_mode_0600_beside_the_config(tmp_path):
    config = agent_config(tmp_path, otp={})
    del config["otp"]["key_file"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    with IntelligentOTPAgent(str(path)) as first:
        created = (tmp_path / "otpagent.key").read_text()
        mode = stat.S_IMODE((tmp_path / "otpagent.key").stat().st_mode)
        first_fingerprint = first.otp.keys.fingerprint  # type: ignore[union-attr]
    with IntelligentOTPAgent(str(path)) as second:
        again = (tmp_path / "otpagent.key").read_text()

    assert mode == 0o600
    assert len(created.strip()) == 43  # 32 random bytes, base64url
    assert again == created
    assert second.otp.keys.fingerprint == first_fingerprint  # type: ignore[union-attr]
    assert second.otp.keys.source.description == f"the key file {tmp_path / 'otpagent.key'}"  # type: ignore[union-attr]


@pytest.mark.parametrize(("prepare", "words"), [
    (lambda p: (p.write_text("k" * 43), p.chmod(0o644)), "open to other users (mode 0644); it holds the key that "
                                                        "protects every code: run chmod 600"),
    (lambda p: (p.write_text("k" * 43), p.chmod(0o640)), "run chmod 600"),
    (lambda p: (p.write_text("short\n"), p.chmod(0o600)), "is empty or too short"),
    (lambda p: p.mkdir(), "is not a regular file"),
])
def test_a_key_file_that_cannot_be_trusted_is_refused_naming_the_key(make_agent, tmp_path, prepare, words):
    prepare(tmp_path / "otpagent.key")

    with pytest.raises(ConfigError) as caught:
        make_agent()

    assert caught.value.path == "otp.key_file"
    assert words in caught.value.reason
    assert str(tmp_path / "otpagent.key") in caught.value.reason


def test_a_worker_with_another_key_file_refuses_to_start(make_agent, tmp_path):
    first = make_agent()
    other = tmp_path / "other.key"
    other.write_text("another-key-" + "x" * 32)
    other.chmod(0o600)

    with pytest.raises(ConfigError) as caught:
        make_agent(otp={"key_file": str(other)})

    reason = caught.value.reason
    assert caught.value.path == "otp.key_file"
    assert f"the OTP key from the key file {other}" in reason
    assert first.otp.keys.fingerprint in reason  # type: ignore[union-attr]
    assert fingerprint(other.read_text().strip().encode()) in reason
    assert "copy the key file of a worker that runs" in reason and "set the same otp.secret" in reason
    assert "otpagent otp reset-key" in reason


def test_a_worker_with_another_secret_refuses_to_start(make_agent, monkeypatch):
    make_agent(otp={"secret": "the-first-secret-0123456789"})

    with pytest.raises(ConfigError) as by_config:
        make_agent(otp={"secret": "another-secret-0123456789"})
    monkeypatch.setenv("OTPAGENT_OTP_SECRET", "yet-another-secret-0123456789")
    with pytest.raises(ConfigError) as by_env:
        make_agent()

    assert by_config.value.path == by_env.value.path == "otp.secret"
    assert "the OTP key from otp.secret" in by_config.value.reason
    assert "the OTP key from $OTPAGENT_OTP_SECRET" in by_env.value.reason


def test_a_worker_without_the_stores_key_refuses_and_creates_no_key_file(make_agent, tmp_path):
    make_agent()
    missing = tmp_path / "elsewhere" / "otpagent.key"
    missing.parent.mkdir()

    with pytest.raises(ConfigError) as caught:
        make_agent(otp={"key_file": str(missing)})

    assert caught.value.path == "otp.key_file"
    assert f"there is no key file {missing}" in caught.value.reason
    assert not missing.exists(), "a second key would only hide the mismatch"


def test_the_secret_is_found_in_the_documented_order(make_agent, monkeypatch, tmp_path):
    monkeypatch.setenv("OTPAGENT_OTP_SECRET", "from-the-environment-0123456789")
    configured = make_agent(otp={"secret": "from-the-config-0123456789"}, storage={"backend": "memory"})
    from_env = make_agent(storage={"backend": "memory"})
    monkeypatch.delenv("OTPAGENT_OTP_SECRET")
    from_file = make_agent(storage={"backend": "memory"})

    assert configured.otp.keys.source.description == "otp.secret"  # type: ignore[union-attr]
    assert configured.otp.keys.secret == b"from-the-config-0123456789"  # type: ignore[union-attr]
    assert from_env.otp.keys.source.description == "$OTPAGENT_OTP_SECRET"  # type: ignore[union-attr]
    assert from_file.otp.keys.source.description == f"the key file {tmp_path / 'otpagent.key'}"  # type: ignore[union-attr]


def test_a_configured_secret_keeps_the_code_hashes_of_earlier_versions(make_agent):
    """Upgrading with ``otp.secret`` set invalidates no outstanding code: the HMAC key is the
    secret itself, as before."""
    secret = "kept-across-the-upgrade-0123456789"
    agent = make_agent(otp={"secret": secret})

    made_before = hmac.new(secret.encode(), b"+447700900123\x00login\x00123456", "sha256").digest()

    assert agent.otp.code_hash("+447700900123", "login", "123456") == made_before  # type: ignore[union-attr]


def _tamper(value: str) -> str:
    middle = len(value) // 2
    return value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1:]


def set_secret(db: Path, message_id: str, value: str) -> None:
    """Change a stored value behind the agent's back, as someone with the file could."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE messages SET secret = ? WHERE id = ?", (value, message_id))


def test_a_sealed_code_that_does_not_open_fails_its_message_cleanly(make_agent, outbox: Outbox, tmp_path):
    agent = make_agent()
    tampered, swapped, good = (agent.send_otp(p) for p in PHONES)
    value = {i: agent.storage.get_message(i).secret for i in (tampered, swapped, good)}
    set_secret(tmp_path / "otpagent.db", tampered, _tamper(value[tampered]))
    # A sealed code copied onto another message does not open: the message id is bound to it.
    set_secret(tmp_path / "otpagent.db", swapped, value[good])

    agent.start_processing()
    assert agent.wait_until_idle(10)

    for message_id in (tampered, swapped):
        message = agent.storage.get_message(message_id)
        assert message.status is Status.FAILED
        assert "does not open with this worker's OTP key" in message.last_error
        assert message.secret is None
        assert outbox.for_message(message_id) == [], "nothing is sent, least of all garbage"
    assert agent.get_delivery_report(good).status is Status.SENT


@pytest.mark.parametrize(("value", "words"), [("enc1:!!notbase64", "damaged"), ("123456", "is not sealed")])
def test_a_value_that_is_not_a_sealed_code_fails_its_message(make_agent, outbox: Outbox, tmp_path, value, words):
    agent = make_agent()
    message_id = agent.send_otp(PHONES[0])
    agent.storage.settle_intake()  # the queued message moved where the row below is changed
    set_secret(tmp_path / "otpagent.db", message_id, value)

    agent.start_processing()
    assert agent.wait_until_idle(10)

    message = agent.storage.get_message(message_id)
    assert (message.status, message.secret) == (Status.FAILED, None)
    assert words in message.last_error
    assert outbox.for_message(message_id) == []


def _final(agent: IntelligentOTPAgent, message_id: str) -> Any:
    return agent.storage.get_message(message_id)


def test_every_final_state_drops_the_sealed_code(make_agent, outbox: Outbox, tmp_path):
    clock = FakeClock()
    failing = {"plugin": "console", "quiet": True, "kind": "sms", "fail_rate": 1.0, "fail_mode": "permanent"}
    agent = make_agent(clock=clock, otp={"ttl_seconds": 60})
    doomed_agent = make_agent(clock=clock, channels={"a": failing}, storage={"backend": "memory"},
                              otp={"key_file": str(tmp_path / "memory.key")})
    expired = agent.send_otp(PHONES[0])
    cancelled = agent.send_otp(PHONES[1])
    assert agent.cancel_message(cancelled)
    clock.advance(61)  # the first code expires before it could be sent
    delivered = agent.send_otp(PHONES[2])
    failed = doomed_agent.send_otp(PHONES[0])

    agent.start_processing()
    doomed_agent.start_processing()
    assert agent.wait_until_idle(10) and doomed_agent.wait_until_idle(10)
    assert _final(agent, delivered).status is Status.SENT
    assert _final(agent, delivered).secret is not None, "kept while fallback may still need it"
    provider_id = agent.get_delivery_report(delivered).provider_message_id
    agent.record_provider_event(ProviderEvent(source="test", event_id="e1", provider_message_id=provider_id,
                                              status=Status.DELIVERED))

    states = {m: (_final(a, m).status, _final(a, m).secret) for a, m in (
        (agent, expired), (agent, cancelled), (agent, delivered), (doomed_agent, failed))}
    assert states == {expired: (Status.EXPIRED, None), cancelled: (Status.CANCELLED, None),
                      delivered: (Status.DELIVERED, None), failed: (Status.FAILED, None)}


def test_a_sent_code_is_dropped_when_it_expires(make_agent, outbox: Outbox):
    clock = FakeClock()
    agent = make_agent(clock=clock, otp={"ttl_seconds": 60})
    agent.start_processing()
    message_id = agent.send_otp(PHONES[0])
    outbox.code_for(message_id)
    assert wait_for(lambda: _final(agent, message_id).status is Status.SENT)
    clock.advance(61)

    assert agent.storage.redact_expired_secrets(clock()) == 1
    assert _final(agent, message_id).secret is None


def test_each_seal_is_fresh_and_opens_only_for_its_message() -> None:
    from otpagent.otp_seal import CodeSealer, UnreadableCode

    sealer = CodeSealer(b"a-master-secret-of-some-length")
    first, second = sealer.seal("msg_1", "123456"), sealer.seal("msg_1", "123456")

    assert first != second, "a random nonce per seal"
    assert sealer.open("msg_1", first) == sealer.open("msg_1", second) == "123456"
    with pytest.raises(UnreadableCode):
        sealer.open("msg_2", first)
    with pytest.raises(UnreadableCode):
        CodeSealer(b"another-master-secret-entirely").open("msg_1", first)


def test_no_key_appears_in_a_repr_or_a_log_line(make_agent, caplog):
    caplog.set_level("DEBUG", logger="otpagent")
    agent = make_agent(otp={"secret": "never-print-this-secret-0123"})
    agent.send_otp(PHONES[0])

    printed = " ".join([repr(agent.otp), repr(agent.otp.keys), repr(agent.otp.sealer),  # type: ignore[union-attr]
                        repr(agent.config), repr(agent.storage.get_message(agent.storage.recent_messages(1)[0].id)),
                        caplog.text])
    assert "never-print-this-secret-0123" not in printed
    assert "enc1:" not in printed, "not even the sealed code is printed"


def test_a_key_file_that_cannot_be_created_says_what_to_do_instead(make_agent, tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_agent(otp={"key_file": str(tmp_path / "no-such-directory" / "otpagent.key")})

    assert caught.value.path == "otp.key_file"
    assert "cannot create the OTP key file" in caught.value.reason
    assert "$OTPAGENT_OTP_SECRET" in caught.value.reason
