"""The look-ups behind DMARC (relay.core.dmarc): SPF with pyspf, each DKIM signature with dkimpy,
the `_dmarc` record with dnspython, all through one resolver (`[dns] nameservers`, `timeout`).
Blocking: `relay serve` runs them on threads of their own, never on the database thread.

In `trust` mode nothing is looked up: the front MTA's `Authentication-Results` (those whose
authserv-id is `[auth] trusted_authserv_id`, parsed with authres) are read instead.
"""

from __future__ import annotations

import email.utils
import re
from email.message import Message
from email.parser import BytesHeaderParser

import authres
import dkim
import dns.exception
import dns.resolver
import idna
import spf

from relay import resolver
from relay.core import addresses, headers
from relay.core.dmarc import POLICIES, TEMPORARY, Checks, Record, organizational_domain, parse_record


class _TemporaryDns(Exception):
    """A name server did not answer (a timeout, a SERVFAIL): the answer may come later."""


def use(resolve: dns.resolver.Resolver) -> None:
    """pyspf asks dnspython's default resolver: make it the relay's (`[dns]`)."""
    dns.resolver.default_resolver = resolve


def _txt(resolve: dns.resolver.Resolver, name: str) -> list[str] | None:
    """A name's TXT strings; None when the name or the record does not exist."""
    try:
        found = resolver.txt(resolve, name)
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise _TemporaryDns(str(exc)) from exc
    return [text.decode("utf-8", "replace") for text in found] or None


def _fields(raw: bytes) -> Message:
    """The header fields alone: the parser would otherwise decode the whole message, a 25 MB body
    included, for fields that all stand before the first empty line."""
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    return BytesHeaderParser().parsebytes(raw[:end] + b"\r\n\r\n")


def from_domain(raw: bytes) -> str | None:
    """The domain of the (first) From address as DMARC judges it, in its ASCII form (an
    internationalised domain is looked up as its xn-- name); None where there is none."""
    # the raw field values: an SMTPUTF8 client writes the header in UTF-8, which the parser hands
    # over as surrogate escapes (headers.utf8 turns them back into characters)
    texts = [headers.utf8(value) for key, value in _fields(raw).raw_items()
             if key.lower() == "from"]
    for _, address in email.utils.getaddresses(texts):
        if "@" in address:
            return _ascii(addresses.split(address)[1])
    return None


def _ascii(domain: str) -> str | None:
    try:
        return idna.encode(domain.rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def look_up(raw: bytes, client_ip: str, helo: str, mail_from: str, resolve: dns.resolver.Resolver,
            timeout: float) -> Checks | None:
    """Everything DMARC needs for one message; None when it has no From domain to judge."""
    domain = from_domain(raw)
    if domain is None:
        return None
    sender = mail_from if "@" in mail_from else f"postmaster@{helo}"
    sender_domain = _ascii(addresses.split(sender)[1]) or ""
    try:
        spf_result, _ = spf.check2(i=client_ip, s=f"{addresses.split(sender)[0]}@{sender_domain}", h=helo,
                                   querytime=timeout)
    except Exception:  # an input pyspf cannot take (not a DNS failure): no SPF verdict
        spf_result = "permerror"
    record_lookup, record, at_org = "ok", None, False
    try:
        texts = _txt(resolve, f"_dmarc.{domain}")
        record = parse_record(texts or [])
        org = organizational_domain(domain)
        if record is None and org != domain:
            record, at_org = parse_record(_txt(resolve, f"_dmarc.{org}") or []), True
        record_lookup = "ok" if record else "none"
    except _TemporaryDns:
        record_lookup = TEMPORARY
    return Checks(from_domain=domain, spf=str(spf_result), spf_domain=sender_domain,
                  dkim=_signatures(raw, resolve), record=record, record_at_org=at_org, record_lookup=record_lookup)


def _signatures(raw: bytes, resolve: dns.resolver.Resolver) -> tuple[tuple[str, str], ...]:
    """(d=, pass|fail|temperror) for each DKIM-Signature, checked on its own."""
    def key(name: bytes, timeout: int = 5) -> bytes | None:
        texts = _txt(resolve, name.decode("ascii", "replace").rstrip("."))
        return texts[0].encode() if texts else None

    checker = dkim.DKIM(raw)
    found = []
    fields = _fields(raw).get_all("DKIM-Signature") or []
    for index, header in enumerate(fields):
        match = re.search(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", str(header))
        domain = match.group(1).lower() if match else "?"
        try:
            found.append((domain, "pass" if checker.verify(idx=index, dnsfunc=key) else "fail"))
        except _TemporaryDns:
            found.append((domain, TEMPORARY))
        except (dkim.DKIMException, ValueError, UnicodeError, IndexError):  # a signature it cannot read
            found.append((domain, "fail"))
    return tuple(found)


def trusted(raw: bytes, authserv_id: str) -> Checks | None:
    """What a front MTA with `authserv_id` recorded (only its own headers count: one from
    outside with another id is ignored); None when it recorded nothing for DMARC."""
    domain = from_domain(raw)
    if domain is None:
        return None
    spf_result, spf_domain, signatures, dmarc_seen = "none", "", [], None
    for header in _fields(raw).get_all("Authentication-Results") or []:
        try:
            parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {header}")
        except authres.AuthResError:
            continue
        if str(parsed.authserv_id).lower() != authserv_id.lower():
            continue
        for result in parsed.results:
            props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
            if result.method == "spf":
                spf_result = str(result.result)
                spf_domain = props.get("smtp.mailfrom", "").rpartition("@")[2] or props.get("smtp.helo", "")
            elif result.method == "dkim":
                signatures.append((props.get("header.d", "?").lower(), str(result.result)))
            elif result.method == "dmarc":
                dmarc_seen = (str(result.result), props.get("policy.dmarc"))
    if dmarc_seen is None:
        return None
    outcome, policy = dmarc_seen
    record = Record(policy=policy, subdomain_policy=None, strict_dkim=False, strict_spf=False) \
        if policy in POLICIES else None
    return Checks(from_domain=domain, spf=spf_result, spf_domain=spf_domain, dkim=tuple(signatures), record=record,
                  reported=outcome)
