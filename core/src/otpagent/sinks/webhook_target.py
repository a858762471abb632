"""Where a webhook may be sent: SSRF protection for configured URLs.

A webhook URL is operator configuration, but it can still point the agent at internal services
(a metadata endpoint, an admin port on localhost). Unless ``allow_private`` is set, a target
whose address is not globally routable (loopback, private, link-local, shared address space,
multicast, reserved, documentation ranges...) is refused,
both when the config is read (a literal address) and before every send (what DNS says now).
Redirects are never followed, so a public URL cannot bounce a request inward.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from otpagent.errors import ConfigError

__all__ = ["TargetRefused", "check_resolved", "check_url"]


class TargetRefused(Exception):
    """The target resolves to an address webhooks may not reach."""


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # Only globally routable unicast addresses: ``is_global`` also excludes the shared address
    # space (100.64.0.0/10, where one cloud's metadata service lives), benchmarking, documentation
    # and other special-purpose ranges that the older flags miss.
    return not address.is_global or address.is_multicast


def check_url(url: str, *, allow_private: bool, path: str) -> str:
    """Validate a webhook URL from the config; returns it. Literal private addresses are refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(path, "must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(path, "must not carry credentials; sign with the secret instead")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None and _forbidden(literal):
            raise ConfigError(path, "points at an address that is not globally routable (private, loopback, "
                                    "link-local, shared or reserved) "
                                    "(set allow_private: true if that is intended)")
        if parts.hostname.lower() in ("localhost", "localhost.localdomain") or parts.hostname.endswith(".localhost"):
            raise ConfigError(path, "points at localhost (set allow_private: true if that is intended)")
    return url


def check_resolved(url: str, *, allow_private: bool) -> None:
    """Refuse a send when the host now resolves to a forbidden address (DNS may change)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _forbidden(address):
            raise TargetRefused(f"{host} resolves to a non-public address")
