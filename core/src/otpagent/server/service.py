"""What every request handler shares: the agent, the settings and the authentication checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from otpagent.server.auth import authenticate_bearer
from otpagent.server.problems import Problem

if TYPE_CHECKING:
    from otpagent.agent import IntelligentOTPAgent
    from otpagent.protocols import RateLimits
    from otpagent.server.batching import CallBatcher
    from otpagent.server.delivery import DeliveryLink
    from otpagent.server.prometheus import AttemptLatencyTap
    from otpagent.server.settings import ServerSettings

__all__ = ["Service", "service_of"]

T = TypeVar("T")


@attrs.define
class Service:
    """The app's state (``request.app.state.service``)."""

    agent: IntelligentOTPAgent
    settings: ServerSettings
    tap: AttemptLatencyTap
    #: For the abuse limits; None only when ``server.limits`` sets none.
    rate_limits: RateLimits | None = None
    #: Runs the writing endpoints' calls when the storage gathers writes; None: the thread pool.
    batcher: CallBatcher | None = None
    #: The workers' own process (``serve``'s default), when they run in one: None when they run
    #: in this process (``settings.run_workers``) or elsewhere (``--no-workers``).
    delivery: DeliveryLink | None = None

    async def run_batched(self, call: Callable[[], T]) -> T:
        """``call()`` off the event loop: in the next batch of calls (their writes one commit)
        when there is a batcher, else on a thread of the pool. For the endpoints that write
        (issue and check codes, queue messages): reads gain nothing from a batch."""
        if self.batcher is not None:
            return await self.batcher.run(call)
        return await run_in_threadpool(call)

    def require_key(self, request: Request) -> str:
        """The caller's key id (first 16 hex digits of its digest); raises 401 without a valid key."""
        return authenticate_bearer(request, self.settings.key_digests).hex()[:16]

    def require_key_unless(self, public: bool, request: Request) -> str | None:
        """Authenticate unless the endpoint is configured public."""
        return None if public else self.require_key(request)

    def client_ip(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"


def service_of(request: Request) -> Service:
    service: Any = request.app.state.service
    if not isinstance(service, Service):  # pragma: no cover - wiring error
        raise Problem(500)
    return service
