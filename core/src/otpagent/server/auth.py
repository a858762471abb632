"""API-key authentication: bearer keys for the API, a signed session cookie for the dashboard.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured
key (no early exit), so neither timing nor the answer tells a near miss from a wild guess. A
missing and a wrong key get the same 401. The dashboard's cookie never holds the key: it holds
an expiry signed with the key's digest, so removing a key from the config ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from starlette.requests import Request

from otpagent.server.problems import Problem
from otpagent.server.settings import key_digest

__all__ = ["SESSION_COOKIE", "authenticate_bearer", "authenticate_browser", "match_key", "session_token",
           "unauthorized"]

SESSION_COOKIE = "otpagent_session"
SESSION_SECONDS = 12 * 3600


def unauthorized() -> Problem:
    """The one answer to a missing, malformed or wrong key."""
    return Problem(401, "a valid API key is required", headers={"WWW-Authenticate": 'Bearer realm="otpagent"'})


def match_key(presented: str, digests: Sequence[bytes]) -> bytes | None:
    """The digest of the configured key that ``presented`` is, or None (constant time over all keys)."""
    candidate = key_digest(presented)
    found: bytes | None = None
    for digest in digests:
        if hmac.compare_digest(candidate, digest):
            found = digest
    return found


def authenticate_bearer(request: Request, digests: Sequence[bytes]) -> bytes:
    """The digest of the request's bearer key; raises 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized()
    found = match_key(key.strip(), digests)
    if found is None:
        raise unauthorized()
    return found


def session_token(digest: bytes, now: float | None = None) -> str:
    """A cookie value: ``<key id>.<expiry>.<signature>``, signed with the key's digest."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    key_id = digest.hex()[:16]
    return f"{key_id}.{expires}.{_sign(digest, key_id, expires)}"


def _sign(digest: bytes, key_id: str, expires: int) -> str:
    return hmac.new(digest, f"session:{key_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def check_session(token: str, digests: Sequence[bytes], now: float | None = None) -> bytes | None:
    """The key digest a valid, unexpired session cookie was signed with, or None."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expires, signature = parts[0], int(parts[1]), parts[2]
    if expires < (now or time.time()):
        return None
    found: bytes | None = None
    for digest in digests:
        if digest.hex()[:16] == key_id and hmac.compare_digest(_sign(digest, key_id, expires), signature):
            found = digest
    return found


def authenticate_browser(request: Request, digests: Sequence[bytes]) -> bytes | None:
    """The key digest behind a bearer header or a session cookie, or None."""
    if request.headers.get("authorization"):
        try:
            return authenticate_bearer(request, digests)
        except Problem:
            return None
    token = request.cookies.get(SESSION_COOKIE)
    return check_session(token, digests) if token else None
