"""Sealing the code a queued OTP message must still carry: AES-256-GCM under a derived key.

Fallback and retries need the clear code again after the first send, so the message keeps it,
but only sealed: ``messages.secret`` holds ``"enc1:" + base64url(nonce || AES-GCM(code))`` with
the message id as associated data (a sealed code copied onto another message does not open).
The key is ``HKDF-SHA256(master secret, info="otpagent otp code sealing v1")``, so it never
lives in the database either. The code is opened in memory just before a send and the value is
cleared when the message reaches a final state.

AES-256-GCM rather than ChaCha20-Poly1305: both are sound AEADs in ``cryptography``; AES-GCM is
the one FIPS 140 and NIST SP 800-38D approve, which matters to people who deploy OTP systems,
and it runs in hardware on every server CPU. A random 96-bit nonce per seal keeps the chance of
a nonce repeating below 2^-32 for the first 2^32 codes under one key, far beyond any fleet's
lifetime of OTPs between key resets.

``cryptography`` is imported on the first seal or open, not when otpagent is imported.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_PREFIX", "CodeSealer", "UnreadableCode", "is_sealed"]

SEALED_PREFIX = "enc1:"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_INFO = b"otpagent otp code sealing v1"


class UnreadableCode(Exception):
    """A stored code that cannot be opened; the message fails with this reason, nothing is sent."""


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


class CodeSealer:
    """Seal and open OTP codes with a key derived from the master OTP secret."""

    def __init__(self, master_secret: bytes) -> None:
        self._master = master_secret
        self._aead: AESGCM | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "CodeSealer(<key hidden>)"

    def _cipher(self) -> AESGCM:
        aead = self._aead
        if aead is not None:
            return aead
        with self._lock:  # the first seal or open: import and derive once
            if self._aead is None:
                from cryptography.hazmat.primitives import hashes
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM
                from cryptography.hazmat.primitives.kdf.hkdf import HKDF

                key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(self._master)
                self._aead = AESGCM(key)
            return self._aead

    def seal(self, message_id: str, code: str) -> str:
        """``enc1:`` + base64url(nonce || ciphertext and tag), bound to ``message_id``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, code.encode("utf-8"), message_id.encode("utf-8"))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, message_id: str, value: str) -> str:
        """The code sealed in ``value`` for ``message_id``; :class:`UnreadableCode` when it was
        not sealed by otpagent, was altered, belongs to another message or was sealed under
        another key."""
        from cryptography.exceptions import InvalidTag

        if not is_sealed(value):
            raise UnreadableCode("the stored OTP code is not sealed (written by something other than this "
                                 "otpagent); it was not sent")
        body = value[len(SEALED_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) <= _NONCE_BYTES + _TAG_BYTES:
            raise UnreadableCode("the stored OTP code is damaged (not a sealed value); it was not sent")
        try:
            code = self._cipher().decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], message_id.encode("utf-8"))
        except InvalidTag:
            raise UnreadableCode("the stored OTP code does not open with this worker's OTP key: the key changed "
                                 "since the code was issued (otpagent otp reset-key, another key file or "
                                 "otp.secret), or the stored value was altered; it was not sent, and the "
                                 "user must ask for a new code") from None
        return code.decode("utf-8")
