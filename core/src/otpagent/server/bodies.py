"""Reading request bodies: size-capped, JSON only, validated against our own schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from otpagent.server.problems import Problem
from otpagent.server.schemas import resolve
from otpagent.server.validation import validate

__all__ = ["parse_json", "read_body", "schema_errors", "validated"]


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


def parse_json(raw: bytes) -> Any:
    """The parsed JSON document, or 400 saying where it is malformed."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Problem(400, "the body must be UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise Problem(400, "the JSON document is nested too deeply") from None


def schema_errors(data: Any, schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every mismatch with ``schema`` as ``{field, index, reason}`` objects."""
    return [{"field": e.field, "index": e.index, "reason": e.reason} for e in validate(data, resolve(dict(schema)))]


def validated(data: Any, schema: Mapping[str, Any]) -> Any:
    """``data`` when it matches ``schema``; otherwise 422 listing every field at fault."""
    errors = schema_errors(data, schema)
    if errors:
        raise Problem(422, "the request body does not match the schema; see errors", errors=errors)
    return data
