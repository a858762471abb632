"""A minimal, fast fake of Twilio's Messages API for throughput runs, in its own process.

The test suite's fake (``tests/twilio/fake_twilio.py``) checks every field against Twilio's
OpenAPI document on a thread-per-connection HTTP/1.0 server: right for correctness, but it would
measure itself. This one is an asyncio HTTP/1.1 server with keep-alive that still checks what
matters on the wire (the path and its account SID, HTTP Basic auth, ``To``, ``From`` and
``Body``) and answers Twilio's JSON shape, optionally after a fixed latency. Running it in a
child process keeps its CPU off the measured process's GIL.

``python -m bench.fakeprovider --latency 0.2`` prints ``PORT <n>`` and serves until stdin closes.
``GET /__stats`` returns ``{"created": n, "rejected": m, "connections": c}`` (c: TCP connections
accepted, which shows whether a client really keeps its connections alive).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
import uuid
from typing import Any
from urllib.parse import parse_qs

__all__ = ["ACCOUNT_SID", "AUTH_TOKEN", "SENDER"]

ACCOUNT_SID = "AC" + "be" * 16
AUTH_TOKEN = "benchtoken" + "0" * 22
SENDER = "+15005550006"
_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")
_AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


class Fake:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.created = 0
        self.rejected = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(10_000_000):  # bounded: one connection's keep-alive requests
                line = await reader.readline()
                if not line:
                    break
                method, target, _version = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                for _h in range(200):
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                status, payload = await self.respond(method, target, headers, body)
                data = json.dumps(payload).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if method == "GET" and target == "/__stats":
            return 200, {"created": self.created, "rejected": self.rejected, "connections": self.connections}
        if self.latency:
            await asyncio.sleep(self.latency)
        match = _PATH.match(target.split("?", 1)[0])
        if method != "POST" or not match or match.group(1) != ACCOUNT_SID:
            self.rejected += 1
            return 404, _error(20404, "The requested resource was not found", 404)
        if headers.get("authorization") != _AUTH:
            self.rejected += 1
            return 401, _error(20003, "Authenticate", 401)
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        if not form.get("To"):
            self.rejected += 1
            return 400, _error(21604, "A 'To' phone number is required.", 400)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            self.rejected += 1
            return 400, _error(21603, "A 'From' phone number is required.", 400)
        if not form.get("Body"):
            self.rejected += 1
            return 400, _error(21602, "Message body is required.", 400)
        self.created += 1
        sid = "SM" + uuid.uuid4().hex
        return 201, {
            "sid": sid, "account_sid": ACCOUNT_SID, "to": form["To"], "from": form.get("From"),
            "body": form["Body"], "status": "queued", "num_segments": "1", "num_media": "0", "direction":
            "outbound-api", "api_version": "2010-04-01", "price": None, "price_unit": "USD", "error_code": None,
            "error_message": None, "messaging_service_sid": form.get("MessagingServiceSid"),
            "date_created": "Wed, 25 Nov 2026 20:00:00 +0000", "date_updated": "Wed, 25 Nov 2026 20:00:00 +0000",
            "date_sent": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
        }


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


async def serve(latency: float) -> None:
    fake = Fake(latency)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0, backlog=2048)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or dies): no orphaned servers.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    asyncio.run(serve(args.latency))


if __name__ == "__main__":
    main()
