"""Liveness and readiness probes (public unless ``server.public_health`` is false)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otpagent.server.service import service_of

__all__ = ["health_routes"]


async def healthz(request: Request) -> Response:
    """GET /healthz: the process answers."""
    service = service_of(request)
    service.require_key_unless(service.settings.public_health, request)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """GET /readyz: storage reachable and (unless run separately) the workers alive, in this process
    or in serve's delivery process."""
    service = service_of(request)
    service.require_key_unless(service.settings.public_health, request)
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(service.agent.storage.ping)
        checks["storage"] = "ok"
    except Exception:  # any failure means not ready; the reason stays in the server's log
        checks["storage"] = "unreachable"
    if service.settings.run_workers:
        checks["workers"] = "ok" if service.agent.is_running else "stopped"
    elif service.delivery is not None:  # serve's delivery process
        checks["workers"] = "ok" if await run_in_threadpool(service.delivery.alive) else "stopped"
    else:
        checks["workers"] = "external"
    ready = checks["storage"] == "ok" and checks["workers"] != "stopped"
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)


def health_routes() -> list[Route]:
    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
