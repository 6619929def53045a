"""Relay addresses (capabilities), party addresses, and the masked form used in logs.

A relay address is a bearer token: whoever knows it may write to one party of one case (if they
also send from the other party's registered address). 160 random bits from `secrets`, lowercase
base32 so mail systems that lowercase local parts do not break it, and no `+` so no subaddressing
rule splits it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from email.errors import HeaderParseError
from email.headerregistry import Address

import idna

TOKEN_BYTES = 20  # 160 bits
_TOKEN = re.compile(r"[a-z2-7]{32}")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


class InvalidAddress(ValueError):
    """An e-mail address that the relay will not store or send to."""


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=").lower()


def is_domain(text: str) -> bool:
    """A host name of at least two labels (the relay's own domain, a party's, in ASCII)."""
    return _DOMAIN.fullmatch(text) is not None


def is_null_sender(envelope_from: str | None) -> bool:
    """The empty envelope sender `<>` of delivery reports and automatic replies (RFC 5321 4.5.5)."""
    return not (envelope_from or "").strip().strip("<>").strip()


def is_token(local_part: str) -> bool:
    return bool(_TOKEN.fullmatch(local_part))


def split(address: str) -> tuple[str, str]:
    """'Local@Domain' -> ('Local', 'domain'). No validation beyond the one '@'."""
    local, sep, domain = address.strip().strip("<>").rpartition("@")
    if not sep:
        return address.strip(), ""
    return local, domain.lower()


def normalize(address: str) -> str:
    """Compare addresses case-insensitively, as the design asks (real mail systems disagree)."""
    return address.strip().strip("<>").lower()


def _ascii_domain(domain: str) -> str | None:
    """An internationalised domain in its ASCII form (`bücher.example` -> `xn--bcher-kva.example`),
    by IDNA 2008 with the UTS 46 mapping browsers and mail clients use; None if it is not one."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        try:
            return domain.encode("idna").decode("ascii")  # IDNA 2003 accepts a few more
        except (UnicodeError, ValueError):
            return None


def _unicode_domain(domain: str) -> str | None:
    try:
        return idna.decode(domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        try:
            return domain.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            return None


def canonical(address: str) -> str:
    """The form two spellings of one address share: lowercased, the domain in its ASCII form
    (`anna@bücher.example` and `anna@xn--bcher-kva.example` are one mailbox)."""
    local, domain = split(normalize(address))
    ascii_domain = _ascii_domain(domain) if domain and not domain.isascii() else domain
    return f"{local}@{ascii_domain or domain}" if domain else local


def spellings(address: str) -> tuple[str, ...]:
    """Every way the address is written: as given, with its domain in ASCII (punycode) and in
    Unicode. A message may name its sender either way; both must be hidden."""
    local, domain = split(normalize(address))
    if not domain:
        return (normalize(address),) if normalize(address) else ()
    forms = [normalize(address)]
    ascii_domain = domain if domain.isascii() else _ascii_domain(domain)
    if ascii_domain:
        forms.append(f"{local}@{ascii_domain}")
        if "xn--" in ascii_domain:
            unicode_domain = _unicode_domain(ascii_domain)
            if unicode_domain:
                forms.append(f"{local}@{unicode_domain}")
    return tuple(dict.fromkeys(forms))


def validate(address: str) -> str:
    """A plain addr-spec a real mailbox can have; returns it normalised (lowercase, an
    internationalised domain in its ASCII form)."""
    text = address.strip()
    if not text or any(c in text for c in "\r\n\t <>,;\"()"):
        raise InvalidAddress(f"{address!r} is not a plain e-mail address (local@domain)")
    try:
        parsed = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError):
        raise InvalidAddress(f"{address!r} is not a valid e-mail address") from None
    domain = parsed.domain.lower()
    ascii_domain = domain if domain.isascii() else _ascii_domain(domain)
    if not parsed.username or not ascii_domain or not is_domain(ascii_domain):
        raise InvalidAddress(f"{address!r} needs a local part and a domain such as example.org")
    # an internationalised domain is kept in its ASCII form: every mail system can deliver to it
    return normalize(f"{split(text)[0]}@{ascii_domain}")


def mask(address: str, key: bytes) -> str:
    """A stable pseudonym for logs: the same address always gives the same tag, but the tag cannot be
    reversed without the relay's key (a plain hash of an address can be brute-forced from a list)."""
    digest = hmac.new(key, normalize(address).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"addr:{digest[:12]}"
