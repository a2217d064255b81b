"""Where webhooks may be sent: public addresses only, judged after DNS resolution, so a webhook cannot make the
workers reach their own host, its cloud metadata service or the internal network.

`target_check` resolves a URL's host and returns the address to connect to; the sender connects to that very
address (with the URL's host in the Host header and TLS server name), so a name that resolves elsewhere a moment
later is never contacted. `WEBHOOK_ALLOW_PRIVATE` (hosts, addresses or networks) lists the deliberate exceptions.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED_MESSAGE = (
    "points to a loopback, private, link-local or otherwise internal address; webhooks are sent to public addresses "
    "only (an operator can allow a host or network with QUORUM_WEBHOOK_ALLOW_PRIVATE)"
)


class TargetRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks are not sent to."""


class TargetUnresolved(Exception):
    """The URL's host does not resolve (now)."""


@dataclasses.dataclass(frozen=True)
class Target:
    address: Address
    port: int


def _internal(ip: Address) -> bool:
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return _internal(ip.ipv4_mapped)
        if ip.sixtofour is not None and _internal(ip.sixtofour):
            return True
        if ip.is_site_local:
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _exceptions() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts, networks = set(), []
    for entry in getattr(settings, "WEBHOOK_ALLOW_PRIVATE", None) or []:
        entry = str(entry).strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry)
    return hosts, networks


def address_allowed(ip: Address, *, host: str = "") -> bool:
    """Whether a delivery may connect to `ip` (reached through the URL host `host`)."""
    if not _internal(ip):
        return True
    hosts, networks = _exceptions()
    if host.lower().rstrip(".") in hosts:
        return True
    candidates = [ip] + ([ip.ipv4_mapped] if ip.version == 6 and ip.ipv4_mapped is not None else [])
    return any(c.version == n.version and c in n for c in candidates for n in networks)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as error:
        raise TargetUnresolved(host) from error
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise TargetUnresolved(host)
    return found


def target_check(url: str) -> Target:
    """The address a delivery to `url` connects to, once every address its host resolves to is allowed.

    Raises TargetRefused when any of them is internal (one bad answer among good ones could be the one a
    connection would pick), TargetUnresolved when the host has no address now.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not all(address_allowed(ip, host=host) for ip in addresses):
        raise TargetRefused(host)
    return Target(address=addresses[0], port=port)
