"""A small keep-alive HTTP/1.1 load generator on asyncio streams, for loopback benchmarks.

Python HTTP clients (httpx, requests) spend more CPU per request than a lean ASGI server, so
on a 2-core machine they would measure themselves. This client does the least: write the
request bytes, read the status line, headers and ``Content-Length`` body, over a few
persistent connections. The same client drives both the figure and its baseline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["post_all"]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    chunked = False
    for _ in range(100):
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        for _ in range(10_000):
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return status, body
    return status, await reader.readexactly(length) if length else b""


async def _worker(port: int, path: str, headers: str, bodies: Sequence[bytes], indexes: Sequence[int],
                  results: list[Any], deadline: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    try:
        for i in indexes:
            if loop.time() >= deadline:
                return
            body = bodies[i]
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            status, data = await _read_response(reader)
            results[i] = (status, data)
    finally:
        writer.close()


async def _post_all(port: int, path: str, payloads: Sequence[Any], connections: int, headers: dict[str, str],
                    budget: float) -> list[Any]:
    bodies = [json.dumps(p).encode() for p in payloads]
    header_text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    results: list[Any] = [None] * len(bodies)
    deadline = asyncio.get_running_loop().time() + budget
    await asyncio.gather(*(_worker(port, path, header_text, bodies, range(k, len(bodies), connections), results,
                                   deadline) for k in range(connections)))
    return results


def post_all(port: int, path: str, payloads: Sequence[Any], *, connections: int = 8,
             headers: dict[str, str] | None = None, budget: float = 60.0,
             decode: Callable[[bytes], Any] = json.loads) -> list[tuple[int, Any] | None]:
    """POST each payload (JSON) to ``path``; returns ``(status, decoded body)`` per payload
    (None for any not sent within ``budget`` seconds)."""
    raw = asyncio.run(_post_all(port, path, payloads, connections, headers or {}, budget))
    out: list[tuple[int, Any] | None] = []
    for item in raw:
        if item is None:
            out.append(None)
            continue
        status, data = item
        try:
            out.append((status, decode(data) if data else None))
        except ValueError:
            out.append((status, data))
    return out
