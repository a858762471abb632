"""The master OTP secret: where it comes from, and that every worker of a store holds the same.

Codes are stored as HMACs and the code a queued message must still carry is sealed (AEAD,
:mod:`otpagent.otp_seal`); both keys come from one master secret that never enters the
database, so a copy of the database (its WAL included) gives away neither a live code nor a
key. The secret is, in this order: ``otp.secret`` (config; ``${ENV}`` works there),
``$OTPAGENT_OTP_SECRET``, or the key file (``otp.key_file``, default ``otpagent.key`` beside the
config file; :mod:`otpagent.otp_keyfile`), created on first run.

A fleet must share one secret: the store keeps only its *fingerprint* (``otp.key_fingerprint``
in shared state, an HMAC of a fixed label, which reveals nothing of the key), and a worker
whose key has another fingerprint refuses to start, saying how to fix it.
``otpagent otp reset-key`` records the current key's fingerprint on purpose.

Older otpagent kept a generated HMAC key in the store (state ``otp.server_key``). With no other
source configured it is moved into the key file on first start (so outstanding codes still
verify) and deleted from the store by ``OtpStore.seal_legacy_secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from otpagent.config import OtpConfig
from otpagent.errors import ConfigError
from otpagent.logs import get_logger
from otpagent.otp_keyfile import KEY_FILE_PATH, MIN_SECRET_CHARS, create_key_file, read_key_file
from otpagent.protocols import LEGACY_OTP_KEY_STATE, SharedState

__all__ = [
    "DEFAULT_KEY_FILE", "FINGERPRINT_STATE", "KEY_ENV", "KeySource", "OtpKeys", "fingerprint",
    "key_source", "load_otp_keys", "reset_otp_key",
]

log = get_logger("otpagent.otp")

KEY_ENV = "OTPAGENT_OTP_SECRET"
DEFAULT_KEY_FILE = "otpagent.key"
#: Shared state: the fingerprint of the key this store's codes are made with.
FINGERPRINT_STATE = "otp.key_fingerprint"
_FINGERPRINT_LABEL = b"otpagent key id"
_RESET_HINT = ("To replace the key on purpose, run `otpagent otp reset-key` (codes issued under the old key then "
               "stop verifying, and queued codes sealed under it fail).")


@attrs.frozen
class KeySource:
    """Where this worker's master secret comes from: ``secret`` is known for ``otp.secret``
    and the environment; for the key file it is read (or created) from ``key_file``."""

    config_path: str
    description: str
    key_file: Path
    secret: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class OtpKeys:
    """The master secret and what is derived from it. Never printed (``repr`` hides it)."""

    secret: bytes = attrs.field(repr=False)
    source: KeySource
    fingerprint: str

    @classmethod
    def of(cls, secret: str, source: KeySource) -> OtpKeys:
        raw = secret.encode("utf-8")
        return cls(secret=raw, source=source, fingerprint=fingerprint(raw))

    @property
    def hmac_key(self) -> bytes:
        """The key of the code hashes: the secret itself, as before sealed codes existed, so
        codes outstanding when otpagent is upgraded still verify."""
        return self.secret


def fingerprint(secret: bytes) -> str:
    """A key's public name: 16 hex digits of ``HMAC-SHA256(secret, "otpagent key id")``."""
    return hmac.new(secret, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def key_source(otp: OtpConfig, base_dir: Path, environ: Mapping[str, str] | None = None) -> KeySource:
    """Where the secret comes from (nothing is read or created yet)."""
    env = os.environ if environ is None else environ
    key_file = Path(otp.key_file or DEFAULT_KEY_FILE)
    if not key_file.is_absolute():
        key_file = base_dir / key_file
    if otp.secret is not None:
        return KeySource(config_path="otp.secret", description="otp.secret", key_file=key_file, secret=otp.secret)
    from_env = env.get(KEY_ENV)
    if from_env:
        if len(from_env.strip()) < MIN_SECRET_CHARS:
            raise ConfigError("otp.secret", f"the environment variable {KEY_ENV} must hold at least "
                                            f"{MIN_SECRET_CHARS} characters")
        return KeySource(config_path="otp.secret", description=f"${KEY_ENV}", key_file=key_file,
                         secret=from_env.strip())
    return KeySource(config_path=KEY_FILE_PATH, description=f"the key file {key_file}", key_file=key_file)


def load_otp_keys(otp: OtpConfig, base_dir: Path, state: SharedState, *,
                  environ: Mapping[str, str] | None = None) -> OtpKeys:
    """This worker's OTP keys, checked against the store's fingerprint (recorded when absent).

    The key file is created only for a store that has no key yet: a store whose codes were made
    with a key this worker lacks gets a :class:`ConfigError` saying where to copy it from.
    """
    source = key_source(otp, base_dir, environ)
    recorded = state.get_state(FINGERPRINT_STATE)
    secret = source.secret
    if secret is None:
        secret = read_key_file(source.key_file)
    if secret is None:
        legacy = state.get_state(LEGACY_OTP_KEY_STATE)
        if legacy:
            secret = create_key_file(source.key_file, legacy)
            log.warning("otp_key_moved_out_of_store", key_file=str(source.key_file),
                        hint="copy this file to every worker that shares the store")
        elif recorded is not None:
            raise ConfigError(KEY_FILE_PATH, _missing_key(source, recorded))
        else:
            secret = create_key_file(source.key_file)
            log.info("otp_key_file_created", key_file=str(source.key_file))
    keys = OtpKeys.of(secret, source)
    if recorded is None:
        recorded = state.put_state(FINGERPRINT_STATE, keys.fingerprint, only_if_absent=True)
    if recorded != keys.fingerprint:
        raise ConfigError(source.config_path, _other_key(keys, recorded))
    log.info("otp_key_loaded", source=source.description, fingerprint=keys.fingerprint)
    return keys


def reset_otp_key(otp: OtpConfig, base_dir: Path, state: SharedState, *,
                  environ: Mapping[str, str] | None = None) -> tuple[OtpKeys, str | None]:
    """Make this worker's key the store's key: read it (creating the key file when there is
    none), record its fingerprint, and return it with the fingerprint it replaced."""
    source = key_source(otp, base_dir, environ)
    secret = source.secret or read_key_file(source.key_file) or create_key_file(source.key_file)
    keys = OtpKeys.of(secret, source)
    previous = state.get_state(FINGERPRINT_STATE)
    state.put_state(FINGERPRINT_STATE, keys.fingerprint)
    log.warning("otp_key_reset", source=source.description, fingerprint=keys.fingerprint, previous=previous)
    return keys, previous


def _fix(source: KeySource) -> str:
    return (f"Every worker sharing a store must use the same OTP key: copy the key file of a worker that runs to "
            f"{source.key_file} (mode 0600), or set the same otp.secret (or ${KEY_ENV}) on every worker.")


def _other_key(keys: OtpKeys, recorded: str) -> str:
    return (f"the OTP key from {keys.source.description} (fingerprint {keys.fingerprint}) is not the key this "
            f"store's codes are made with (fingerprint {recorded}). {_fix(keys.source)} {_RESET_HINT}")


def _missing_key(source: KeySource, recorded: str) -> str:
    return (f"no OTP key here (otp.secret and ${KEY_ENV} are not set and there is no key file {source.key_file}), "
            f"but this store's codes are made with a key (fingerprint {recorded}) that another worker holds. "
            f"{_fix(source)} {_RESET_HINT}")
