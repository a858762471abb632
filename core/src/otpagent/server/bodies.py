"""JSON bodies: requests read size-capped and validated against our own schemas; answers written
with orjson."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orjson import dumps as _orjson_dumps
from orjson import loads as _orjson_loads
from starlette.requests import Request
from starlette.responses import JSONResponse

from otpagent.server.problems import Problem
from otpagent.server.schemas import resolve
from otpagent.server.validation import validate

__all__ = ["JsonResponse", "parse_json", "read_body", "schema_errors", "validated"]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the cap is refused before reading; a chunked body is
    counted as it streams, so a client cannot make us buffer more than ``limit`` bytes.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Problem(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: Nineteen digits in a row: perhaps an integer orjson cannot hold (it would make it a float).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def parse_json(raw: bytes) -> Any:
    """The parsed JSON document, or 400 saying where it is malformed.

    orjson reads a body in a fraction of ``json.loads``'s time (its text detection, decoding and
    scanning were about a tenth of the event loop's work for an OTP request); whatever it
    refuses goes to ``json.loads`` for the same value or the same error as before (NaN, integers
    beyond 64 bits, UTF-16 and UTF-32 bodies, and every malformed document).
    """
    if _LONG_NUMBER.search(raw) is None:  # orjson would read an integer beyond 64 bits as a float
        try:
            return _orjson_loads(raw)
        except ValueError:  # orjson.JSONDecodeError is one
            pass
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Problem(400, "the body must be UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise Problem(400, "the JSON document is nested too deeply") from None


#: Each request schema with its references resolved, by identity (they are module constants).
_RESOLVED: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}


def schema_errors(data: Any, schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every mismatch with ``schema`` as ``{field, index, reason}`` objects."""
    entry = _RESOLVED.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _RESOLVED[id(schema)] = (schema, resolve(dict(schema)))  # holds the schema: its id stays its own
    return [{"field": e.field, "index": e.index, "reason": e.reason} for e in validate(data, entry[1])]


def validated(data: Any, schema: Mapping[str, Any]) -> Any:
    """``data`` when it matches ``schema``; otherwise 422 listing every field at fault."""
    errors = schema_errors(data, schema)
    if errors:
        raise Problem(422, "the request body does not match the schema; see errors", errors=errors)
    return data


class JsonResponse(JSONResponse):
    """A JSON answer written by orjson, in a fraction of ``json.dumps``'s time: the same compact
    UTF-8 text as Starlette's ``JSONResponse`` for strings, integers, booleans, lists and
    objects (what the writing endpoints answer with); a float is the same value, but an exponent
    is written without padding (``1e-7``, not ``1e-07``), so answers full of floats (a delivery
    report) stay with ``JSONResponse``. Non-finite floats are refused, as Starlette refuses them
    (orjson alone would write ``null``)."""

    def render(self, content: Any) -> bytes:
        try:
            text: bytes = _orjson_dumps(content)
        except TypeError:  # an integer beyond 64 bits: the standard encoder, as before
            return super().render(content)
        if b"null" in text:  # a None, or a non-finite float orjson wrote as null: the standard way
            return super().render(content)
        return text
