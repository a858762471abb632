"""Validation of the fields of a message request: one source for the Python API and the REST API.

Each converter takes what a caller handed us and returns the clean value, or raises
:class:`~otpagent.errors.InvalidRequest` naming the field and what is wrong with it. The limits
below are read by these converters *and* by the service's JSON Schemas (``server/schemas.py``),
so the OpenAPI document never promises more or less than the engine accepts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from otpagent.errors import InvalidRequest
from otpagent.recipients import normalise_email, normalise_phone

__all__ = [
    "MAX_CHANNELS",
    "MAX_LENGTH",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "MAX_METADATA_KEYS",
    "MAX_RETRIES",
    "MAX_SCHEDULE_AHEAD_SECONDS",
    "callback_url",
    "channels",
    "content",
    "idempotency_key",
    "max_retries",
    "metadata",
    "optional_email",
    "optional_phone",
    "preferred_channel",
    "scheduled_for",
    "subject",
    "text",
    "user_id",
]

#: Longest accepted value of each text field, in characters.
MAX_LENGTH: Final[Mapping[str, int]] = {
    "content": 100_000,
    "subject": 998,  # RFC 5322's line limit: a subject is one header line
    "user_id": 256,
    "idempotency_key": 255,
    "preferred_channel": 64,
    "channel": 64,  # each name in ``channels``
    "callback_url": 2048,
    "phone_number": 32,
    "email": 254,  # RFC 5321's path limit
}
MAX_CHANNELS: Final = 16
MAX_RETRIES: Final = 100
MAX_METADATA_KEYS: Final = 50
MAX_METADATA_DEPTH: Final = 8
MAX_METADATA_BYTES: Final = 16_384
#: A message scheduled further ahead than this is refused: it is nearly always a unit mistake
#: (epoch milliseconds where seconds were meant put a reminder in the year 55,000).
MAX_SCHEDULE_AHEAD_SECONDS: Final = 100 * 365.25 * 86400.0


def text(field: str, value: object, *, one_line: bool = False, limit: int | None = None) -> str | None:
    """A string field within its length limit (``MAX_LENGTH[field]`` unless given), valid
    Unicode (no lone surrogates)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest.single(field, f"must be a string, got {type(value).__name__}")
    limit = MAX_LENGTH[field] if limit is None else limit
    if len(value) > limit:
        raise InvalidRequest.single(field, f"too long ({len(value)} > {limit} characters)")
    _check_unicode(field, value)
    if one_line and ("\r" in value or "\n" in value):
        raise InvalidRequest.single(field, "must be a single line (no carriage return or line feed)")
    return value


def _check_unicode(field: str, value: str) -> None:
    """Refuse text that is not valid Unicode: a lone surrogate cannot be stored or sent."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InvalidRequest.single(
            field, f"is not valid Unicode text: unpaired surrogate U+{ord(bad):04X} at position {exc.start}"
        ) from None


# The optional text fields answer None without calling text(): attrs runs each converter on its
# default too, and most requests leave most of them out.
def content(value: object) -> str | None:
    return None if value is None else text("content", value)


def subject(value: object) -> str | None:
    # CR/LF in a subject would let a caller write extra e-mail headers.
    return None if value is None else text("subject", value, one_line=True)


def user_id(value: object) -> str | None:
    return None if value is None else text("user_id", value)


def idempotency_key(value: object) -> str | None:
    return None if value is None else text("idempotency_key", value)


def preferred_channel(value: object) -> str | None:
    return None if value is None else text("preferred_channel", value)


def callback_url(value: object) -> str | None:
    return None if value is None else text("callback_url", value)


def optional_phone(value: object) -> str | None:
    if value is None or value == "":
        return None
    checked = text("phone_number", value)
    assert checked is not None
    return normalise_phone(checked)


def optional_email(value: object) -> str | None:
    if value is None or value == "":
        return None
    checked = text("email", value)
    assert checked is not None
    return normalise_email(checked)


def channels(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        raise InvalidRequest.single("channels", f"must be a list of channel names, got {type(value).__name__}")
    if not value or len(value) > MAX_CHANNELS:
        raise InvalidRequest.single("channels", f"must name from 1 to {MAX_CHANNELS} channels")
    out = []
    for name in value:
        if not isinstance(name, str) or not name:
            raise InvalidRequest.single("channels", "must be a list of non-empty channel names")
        checked = text("channel", name)
        assert checked is not None
        out.append(checked)
    return tuple(out)


def max_retries(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise InvalidRequest.single("max_retries", f"must be an integer from 0 to {MAX_RETRIES}, got {value!r}")
    return value


def metadata(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Free JSON data stored with the message: an object of at most ``MAX_METADATA_KEYS`` keys,
    ``MAX_METADATA_DEPTH`` levels and ``MAX_METADATA_BYTES`` bytes of JSON, valid Unicode."""
    if value is None or (type(value) is dict and not value):  # the common case: none given
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequest.single("metadata", "must be a JSON object")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest.single("metadata", f"has {len(value)} keys; at most {MAX_METADATA_KEYS} are allowed")
    _check_json("metadata", value, 0)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest.single("metadata", f"is {size} bytes of JSON; at most {MAX_METADATA_BYTES} are allowed")
    return dict(value)


def _check_json(path: str, value: object, depth: int) -> None:
    """Refuse what JSON cannot hold (sets, objects, NaN), lone surrogates and deep nesting."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidRequest.single(path, f"is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest.single(path, f"keys must be strings, got {type(key).__name__}")
            _check_unicode(f"{path}.<key>", key)
            _check_json(f"{path}.{key}", item, depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(f"{path}[{i}]", item, depth + 1)
    else:
        _check_json_scalar(path, value)


def _check_json_scalar(path: str, value: object) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest.single(path, f"must be a finite number, got {value!r}")
    elif isinstance(value, str):
        _check_unicode(path, value)
    else:
        raise InvalidRequest.single(path, f"must be JSON data (object, array, string, number, bool, null), "
                                          f"got {type(value).__name__}")


def scheduled_for(value: datetime | float | int | str | None) -> float | None:
    """When to send, as POSIX seconds. A datetime without a time zone (and an ISO 8601 string
    without an offset) is local time, exactly as Python's own ``datetime.timestamp()`` reads it;
    numbers are epoch seconds. Non-finite values, times before 1970 and dates more than a century ahead are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest.single("scheduled_for", "expected a datetime, an ISO 8601 string or epoch seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        _check_unicode("scheduled_for", value)
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidRequest.single("scheduled_for", f"not an ISO 8601 date-time: {value!r}") from None
        seconds = _timestamp(parsed)
    elif isinstance(value, datetime):
        seconds = _timestamp(value)
    else:
        raise InvalidRequest.single("scheduled_for", f"expected a datetime, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise InvalidRequest.single("scheduled_for", f"must be a finite time, got {value!r}")
    if seconds < 0:
        raise InvalidRequest.single("scheduled_for", f"is before 1970 ({value!r})")
    if seconds > time.time() + MAX_SCHEDULE_AHEAD_SECONDS:
        raise InvalidRequest.single(
            "scheduled_for", f"{value!r} is more than a century ahead (epoch milliseconds instead of seconds?)"
        )
    return seconds


def _timestamp(value: datetime) -> float:
    try:
        return value.timestamp()  # a naive datetime is local time, as Python reads it
    except (OverflowError, OSError, ValueError):
        raise InvalidRequest.single("scheduled_for", f"{value.isoformat()} is out of range") from None
