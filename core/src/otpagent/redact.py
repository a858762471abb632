"""Keeping secrets out of reprs, logs and errors.

Config sections hold credentials (a Twilio auth token, a SendGrid key, API keys, webhook
secrets, a database password inside a DSN). Anything that may be printed goes through
:func:`redacted` first, which keeps the shape (so a repr still helps debugging) and hides every
value whose key names a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "redacted", "redacted_repr"]

MASK = "***"
_SECRET_WORDS = re.compile(r"(secret|token|password|passwd|api_?keys?|private_?key|credential|auth)", re.I)
_DSN_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]*)(?P<tail>@)", re.I)
_DSN_PARAM = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.I)


def is_secret_key(key: object) -> bool:
    """Whether a config key names a credential (``auth_token``, ``api_keys``, ``secret``...)."""
    return isinstance(key, str) and bool(_SECRET_WORDS.search(key))


def redacted(value: Any, key: object = None) -> Any:
    """``value`` with every secret replaced by ``***`` (mappings and lists walked; passwords
    inside connection strings masked)."""
    if is_secret_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Mapping):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redacted(v) for v in value)
    if isinstance(value, str) and ("://" in value or "password" in value.lower()):
        value = _DSN_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", value)
        return _DSN_PARAM.sub(lambda m: f"{m['head']}{MASK}", value)
    return value


def redacted_repr(value: Any) -> str:
    """``repr`` of :func:`redacted` (for ``attrs.field(repr=redacted_repr)``)."""
    return repr(redacted(value))
