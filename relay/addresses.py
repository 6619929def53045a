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

TOKEN_BYTES = 20  # 160 bits
_TOKEN = re.compile(r"[a-z2-7]{32}")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


class InvalidAddress(ValueError):
    """An e-mail address that the relay will not store or send to."""


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=").lower()


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


def validate(address: str) -> str:
    """A plain addr-spec a real mailbox can have; returns it normalised (lowercase)."""
    text = address.strip()
    if not text or any(c in text for c in "\r\n\t <>,;\"()"):
        raise InvalidAddress(f"{address!r} is not a plain e-mail address (local@domain)")
    try:
        parsed = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError):
        raise InvalidAddress(f"{address!r} is not a valid e-mail address") from None
    if not parsed.username or not _DOMAIN.fullmatch(parsed.domain.lower()):
        raise InvalidAddress(f"{address!r} needs a local part and a domain such as example.org")
    return normalize(text)


def mask(address: str, key: bytes) -> str:
    """A stable pseudonym for logs: the same address always gives the same tag, but the tag cannot be
    reversed without the relay's key (a plain hash of an address can be brute-forced from a list)."""
    digest = hmac.new(key, normalize(address).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"addr:{digest[:12]}"
