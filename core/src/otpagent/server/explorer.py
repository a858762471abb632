"""``GET /docs``: an interactive API explorer (Swagger UI) for ``/openapi.json``.

Swagger UI's distribution ships inside the package (``static/explorer``, Apache 2.0, version in
``static/explorer/VERSION``): nothing is fetched from a CDN, the page runs under the same
Content-Security-Policy as the dashboard (scripts and styles from this origin only), and the
schema validator badge that would call validator.swagger.io is off. "Authorize" takes an API
key as a bearer token; "Try it out" calls this server.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from otpagent.server.dashboard import CSP, asset
from otpagent.server.problems import Problem

__all__ = ["explorer_routes"]

#: What may be served from static/explorer, with its media type.
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "LICENSE": "text/plain", "VERSION": "text/plain"}
_PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"}


@functools.cache
def _file(name: str) -> tuple[bytes, str]:
    """The bytes of a bundled explorer file and their ETag (read once per process)."""
    data = resources.files("otpagent.server").joinpath("static", "explorer", name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


async def explorer_page(_request: Request) -> Response:
    """GET /docs."""
    return HTMLResponse(asset("docs.html"), headers=_PAGE_HEADERS)


async def explorer_file(request: Request) -> Response:
    """GET /docs/assets/{name}: Swagger UI's files, cached by the browser and revalidated by ETag."""
    name = request.path_params["name"]
    if name not in _FILES:
        raise Problem(404, "no such asset")
    data, etag = _file(name)
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_FILES[name], headers=headers)


def explorer_routes() -> list[Route]:
    return [
        Route("/docs", explorer_page, methods=["GET"]),
        Route("/docs/assets/{name}", explorer_file, methods=["GET"]),
    ]
