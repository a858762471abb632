"""The live dashboard at ``/``: an HTML page, its own script and styles, and its JSON.

On load the page reads ``/dashboard/history`` (the last hour, a point a minute, from storage)
so its charts start full, then polls ``/dashboard/snapshot`` (see
:mod:`otpagent.server.dashboard_data`). It draws its charts itself on ``<canvas>``: no external
library, no CDN, so it works offline. It is protected like the API: a bearer key, or a session
cookie set by the login form (or by opening ``/?key=...`` once; the key is then dropped from
the address bar by a redirect). The cookie is HttpOnly and SameSite=Strict and is accepted only
by the dashboard's own routes, never by the API, so it cannot be used for cross-site requests.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from otpagent.server.auth import SESSION_COOKIE, SESSION_SECONDS, authenticate_browser, match_key, session_token
from otpagent.server.bodies import read_body
from otpagent.server.dashboard_data import collect_history, collect_snapshot
from otpagent.server.problems import Problem
from otpagent.server.service import Service, service_of

__all__ = ["CSP", "asset", "dashboard_routes"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "docs.js": "text/javascript",
           "docs.css": "text/css"}
_PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"}


def asset(name: str) -> str:
    """The text of a bundled static file."""
    return resources.files("otpagent.server").joinpath("static", name).read_text(encoding="utf-8")


def _login_page(status: int, message: str = "") -> Response:
    html = asset("login.html").replace("{message}", message)
    headers = {**_PAGE_HEADERS, "WWW-Authenticate": 'Bearer realm="otpagent"'}
    return HTMLResponse(html, status_code=status, headers=headers)


def _with_session(response: Response, request: Request, digest: bytes) -> Response:
    response.set_cookie(SESSION_COOKIE, session_token(digest), max_age=SESSION_SECONDS, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


async def index(request: Request) -> Response:
    """GET /: the dashboard, or the login form."""
    service = service_of(request)
    key = request.query_params.get("key")
    if key is not None:
        digest = match_key(key, service.settings.key_digests)
        if digest is None:
            return _login_page(401, "That key is not valid.")
        return _with_session(RedirectResponse("/", status_code=303), request, digest)
    if authenticate_browser(request, service.settings.key_digests) is None:
        return _login_page(401)
    html = asset("dashboard.html").replace("{refresh_ms}", str(int(service.settings.dashboard_refresh_seconds * 1000)))
    return HTMLResponse(html, headers=_PAGE_HEADERS)


async def login(request: Request) -> Response:
    """POST /login (form field ``key``): sets the session cookie and goes to the dashboard."""
    service = service_of(request)
    raw = await read_body(request, 4096)
    key = (parse_qs(raw.decode("utf-8", "replace")).get("key") or [""])[0].strip()
    digest = match_key(key, service.settings.key_digests) if key else None
    if digest is None:
        return _login_page(401, "That key is not valid.")
    return _with_session(RedirectResponse("/", status_code=303), request, digest)


async def logout(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _signed_in(request: Request) -> Service:
    service = service_of(request)
    if authenticate_browser(request, service.settings.key_digests) is None:
        raise Problem(401, "log in first", headers={"WWW-Authenticate": 'Bearer realm="otpagent"'})
    return service


async def snapshot(request: Request) -> Response:
    """GET /dashboard/snapshot: the live figures the page polls, as JSON."""
    data = await run_in_threadpool(collect_snapshot, _signed_in(request))
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


async def history(request: Request) -> Response:
    """GET /dashboard/history: the last hour, a point a minute, for the charts on load."""
    data = await run_in_threadpool(collect_history, _signed_in(request))
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


async def static_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _ASSETS:
        raise Problem(404, "no such asset")
    return Response(asset(name), media_type=_ASSETS[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def dashboard_routes() -> list[Route]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dashboard/snapshot", snapshot, methods=["GET"]),
        Route("/dashboard/history", history, methods=["GET"]),
        Route("/static/{name}", static_asset, methods=["GET"]),
        Route("/favicon.ico", no_icon, methods=["GET"]),
    ]


async def no_icon(_request: Request) -> Response:
    """Browsers ask for it; answering 204 keeps their consoles (and our 404 counts) clean."""
    return Response(status_code=204)
