"""The tests' DNS server (tests/helpers/dns.py) answers as a DNS server does, and fails the ways a
test asks it to: a zone that never answers, the whole server silent for a while, the server gone.
The relay's own resolver ([dns] settings, relay.resolver) is asked through it."""

from __future__ import annotations

import time
from pathlib import Path

import dns.message
import dns.query
import dns.resolver
import pytest

from relay import config, resolver
from tests.helpers.dns import DnsServer

LONG = "v=DKIM1; k=rsa; p=" + "A" * 400  # longer than one TXT string holds


def test_it_answers_from_the_records_it_was_given(dns_server: DnsServer) -> None:
    dns_server.zone("example.org", {
        "@": [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("MX", "10 mail")],
        "mail": [("A", "127.0.0.2"), ("AAAA", "::2")],
        "relay._domainkey": [("TXT", LONG)],
        "_dmarc": [("TXT", 'v=DMARC1; p=reject; rua=mailto:"dmarc"@example.org')],
        "www": [("CNAME", "mail")],
    })
    ask = dns_server.resolver()
    assert dns_server.txt("example.org") == ["v=spf1 ip4:127.0.0.1 -all"]
    assert [r.to_text() for r in ask.resolve("example.org", "MX")] == ["10 mail.example.org."]
    assert [r.to_text() for r in ask.resolve("mail.example.org", "A")] == ["127.0.0.2"]
    assert [r.to_text() for r in ask.resolve("mail.example.org", "AAAA")] == ["::2"]
    [record] = ask.resolve("relay._domainkey.example.org", "TXT")
    assert [len(s) for s in record.strings] == [255, len(LONG) - 255] and b"".join(record.strings) == LONG.encode()
    assert dns_server.txt("_dmarc.example.org") == ['v=DMARC1; p=reject; rua=mailto:"dmarc"@example.org']
    assert ask.resolve("www.example.org", "A").canonical_name.to_text() == "mail.example.org."
    with pytest.raises(dns.resolver.NXDOMAIN):  # a name the zone does not hold
        ask.resolve("nobody.example.org", "TXT")
    with pytest.raises(dns.resolver.NoAnswer):  # a type the name lacks: NODATA
        ask.resolve("mail.example.org", "TXT")
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):  # outside every zone: nothing forwarded
        ask.resolve("example.com", "A")
    assert "TXT relay._domainkey.example.org" in dns_server.queries()

    dns_server.zone("example.org", {"@": [("TXT", "v=spf1 -all")]})  # changed: served at once
    assert dns_server.txt("example.org") == ["v=spf1 -all"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        ask.resolve("mail.example.org", "A")


def test_a_silent_zone_times_out_while_the_others_answer(dns_server: DnsServer) -> None:
    dns_server.zone("example.org", {"@": [("TXT", "v=spf1 -all")]})
    dns_server.silent_zone("slow.example")
    started = time.monotonic()
    with pytest.raises(dns.resolver.LifetimeTimeout):
        dns_server.resolver(timeout=0.5).resolve("relay._domainkey.slow.example", "TXT")
    assert 0.4 < time.monotonic() - started < 3
    assert dns_server.txt("example.org") == ["v=spf1 -all"]


def test_dns_down_then_back(dns_server: DnsServer) -> None:
    dns_server.zone("example.org", {"@": [("TXT", "v=spf1 -all")]})
    query = dns.message.make_query("example.org", "TXT")
    with dns_server.unresponsive(), pytest.raises(dns.resolver.LifetimeTimeout):  # every lookup times out
        dns_server.resolver(timeout=0.5).resolve("example.org", "TXT")
    assert dns_server.txt("example.org") == ["v=spf1 -all"]
    dns_server.stop()  # nothing listens: UDP goes unanswered, TCP is refused
    with pytest.raises(dns.resolver.LifetimeTimeout):
        dns_server.resolver(timeout=0.5).resolve("example.org", "TXT")
    with pytest.raises(ConnectionRefusedError):
        dns.query.tcp(query, dns_server.address, port=dns_server.port, timeout=1)
    dns_server.start()
    assert dns.query.tcp(query, dns_server.address, port=dns_server.port, timeout=1).answer
    assert dns_server.txt("example.org") == ["v=spf1 -all"]


def test_the_relays_resolver_asks_the_servers_of_its_settings(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.zone("example.org", {"relay._domainkey": [("TXT", LONG)]})
    dns_server.silent_zone("slow.example")
    settings = config.from_mapping({"dns": {"nameservers": [dns_server.nameserver], "timeout": "1s"}}, tmp_path, {})
    ask = resolver.from_settings(settings.dns)
    assert resolver.txt(ask, "relay._domainkey.example.org") == [LONG.encode()]
    assert resolver.txt(ask, "nobody.example.org") == []
    started = time.monotonic()
    with pytest.raises(dns.resolver.LifetimeTimeout):  # [dns] timeout bounds the lookup
        resolver.txt(ask, "relay._domainkey.slow.example")
    assert 0.9 < time.monotonic() - started < 2.5
