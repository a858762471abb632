"""The SDK's HTTP client, pointed at a configurable base URL and always bounded by a timeout.

The Twilio SDK builds absolute ``https://api.twilio.com/...`` URLs and hands them to its
``HttpClient``; passing our own subclass through the supported ``http_client=`` argument is how we
send them to a regional edge, a proxy or a local fake without patching the SDK. The SDK's default
client waits forever, which would let one stuck call outlive a worker's lease, so the timeout is
mandatory here. Proxy and CA-bundle settings are read from the environment (``HTTPS_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) once, when the client is made. The SDK's exceptions drop
the response headers, so the last response of each thread is kept to read ``Retry-After`` and
Twilio's own error message from.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

__all__ = ["POOL_SIZE", "BaseUrlHttpClient"]

#: Keep-alive connections kept per host: enough for a few hundred concurrent workers.
POOL_SIZE = 256


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK ships no stubs
    """A ``TwilioHttpClient`` that rewrites every request onto ``base_url`` with a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        # requests keeps 10 connections per host by default; with more worker threads than that,
        # every extra send would open (and close) a TCP+TLS connection of its own.
        if self.session is not None:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
            # requests reads the proxy and CA-bundle variables from the environment on every
            # request (a walk over all of os.environ: a quarter of a send's CPU here). Every
            # request goes to base_url, so read them once, for it, and stop looking.
            found = self.session.merge_environment_settings(base_url, {}, None, None, None)
            self.proxy = dict(found["proxies"])
            self.session.verify = found["verify"]
            self.session.trust_env = False
        parts = urlsplit(base_url)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()

    def target(self, url: str) -> str:
        """Where a request the SDK addressed to ``url`` really goes."""
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to the configured host; remember the response for this thread."""
        self._local.response = None
        response = super().request(
            method, self.target(url), params=params, data=data, headers=headers, auth=auth,
            timeout=timeout or self.timeout, allow_redirects=allow_redirects,
        )
        self._local.response = response
        return response

    def last_response(self) -> Response | None:
        """The response to this thread's latest request (None after a connection error)."""
        response: Response | None = getattr(self._local, "response", None)
        return response

    def close(self) -> None:
        """Close pooled connections."""
        if self.session is not None:
            self.session.close()
