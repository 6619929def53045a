"""The DNS resolver the relay asks, as `[dns]` configures it: the system's name servers (those in
/etc/resolv.conf) or the ones named, each lookup bounded by `[dns] timeout`.

dnspython's resolver, built once and shared: it holds no connection, only where to ask and how
long to wait. A lookup that runs out of time raises `dns.resolver.LifetimeTimeout`; the caller
decides what a lookup that cannot be answered means (a temporary failure, as a rule).
"""

from __future__ import annotations

import dns.nameserver
import dns.resolver

from relay.config import DnsSection

ATTEMPT_SECONDS = 2.0  # one try at one server: a server that does not answer leaves time for the next


def from_settings(section: DnsSection) -> dns.resolver.Resolver:
    """A resolver that asks `[dns] nameservers` (or the system's) and gives up after `[dns] timeout`."""
    resolver = dns.resolver.Resolver(configure=not section.nameservers)
    if section.nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(server.address, server.port)
                                for server in section.nameservers]
    total = section.timeout.total_seconds()
    resolver.lifetime = total
    resolver.timeout = min(total, ATTEMPT_SECONDS)
    resolver.cache = None  # a record changed in DNS counts at once
    return resolver


def txt(resolver: dns.resolver.Resolver, name: str) -> list[bytes]:
    """The TXT records at `name`, each one's strings joined (a DKIM key or an SPF policy longer
    than 255 bytes is split into several); [] where the name or its TXT records do not exist.
    Raises dns.exception.Timeout (LifetimeTimeout) and dns.resolver.NoNameservers (every server
    failed or refused) for the caller to judge."""
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [b"".join(record.strings) for record in answer]
