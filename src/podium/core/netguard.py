"""Where the server may send requests on a user's behalf (SSRF protection).

Members register upstreams (a remote model's `base_url`), and the gateway then connects there and returns
what it answered, so a URL must not reach what only the server can: cloud metadata services and link-local
addresses are always refused, and private networks (loopback, 10/8, 172.16/12, 192.168/16, fc00::/7, …)
unless the server allows them (`upstream_allow_private`, on by default: self-hosted upstreams usually live
there). A URL is checked when it is registered and again at every connection, on the addresses its host
resolves to then (so a name that later resolves elsewhere, DNS rebinding, is caught too).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from podium.core.errors import InvalidInput

# always refused: link-local (cloud metadata lives there), metadata addresses outside it, "this host"
_ALWAYS = [
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128", "0.0.0.0/8", "::/128")
]
_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})
# refused unless private upstreams are allowed
_PRIVATE = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
    )
]


class Blocked(InvalidInput):
    """The destination is not one this server sends requests to."""


@dataclass(frozen=True)
class NetGuard:
    """The policy: private networks allowed or not (metadata and link-local never)."""

    allow_private: bool = True

    def check_address(self, address: str, host: str = "") -> None:
        """Raise `Blocked` if this IP address may not be reached."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        where = f"{host} ({ip})" if host and host != str(ip) else str(ip)
        if any(ip in net for net in _ALWAYS) or ip.is_multicast:
            raise Blocked(f"{where} is a link-local or metadata address; upstreams may not be there")
        if not self.allow_private and any(ip in net for net in _PRIVATE):
            raise Blocked(
                f"{where} is on a private network, which this server does not send to (setting upstream_allow_private)"
            )

    def check_host(self, host: str) -> None:
        """Raise `Blocked` for a forbidden host name (metadata aliases) or a literal address."""
        name = host.strip("[]").rstrip(".").lower()
        if name in _METADATA_HOSTS:
            raise Blocked(f"{host} is a cloud metadata host; upstreams may not be there")
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            return
        self.check_address(name, host)

    def check_url(self, url: str, *, resolve: bool = True) -> None:
        """Check a URL's host, and (with `resolve`) every address it resolves to now. An unresolvable host
        passes here (it may exist later); the connection check catches it then."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"{url!r} is not an http(s) URL with a host", details={"field": "base_url"})
        self.check_host(parts.hostname)
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError:
            return
        for info in infos:
            self.check_address(str(info[4][0]), parts.hostname)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses every address the guard refuses (checked at connection time); a
    refusal is an `OSError`, so aiohttp reports it as a connection error like any unreachable host."""

    def __init__(self, guard: NetGuard):
        self.guard = guard
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The host's addresses, if every one may be reached (one refused address refuses the host)."""
        try:
            self.guard.check_host(host)
            found = await self._inner.resolve(host, port, family)
            for entry in found:
                self.guard.check_address(str(entry["host"]), host)
        except Blocked as exc:
            raise OSError(errno.EACCES, exc.message) from None
        return found

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


async def check_url_async(guard: NetGuard, url: str) -> None:
    """`guard.check_url` off the event loop (name resolution blocks)."""
    await asyncio.to_thread(guard.check_url, url)
