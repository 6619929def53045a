"""Decline links: `{public_url}/decline/{token}`, one per case, in the contact request and the reminder.

A token is the case's decline value (160 random bits, stored with the case, used for nothing else)
and an HMAC of it under the instance key, joined by a hyphen. It names nothing: no case id, no
address, nothing a link scanner, a proxy log or a forwarded mail learns the case from. The random
value alone finds the case; the signature lets the relay refuse a forged or mistyped token without
asking the database (a guess costs the guesser, never the relay), and a token stays bound to the
relay instance that made it: a value copied out of one database into another instance's link is
refused. Signatures are compared in constant time, as for the bounce addresses (relay.core.verp).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

VALUE_BYTES = 20  # 160 bits, as much as a relay address
_SIG_BYTES = 15   # 120 bits: base32 without padding
_VALUE = r"[a-z2-7]{32}"
_TOKEN = re.compile(rf"({_VALUE})-([a-z2-7]{{24}})")
PATH = "/decline/"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def new_value() -> str:
    """A case's decline value, made when the case is opened."""
    return _b32(secrets.token_bytes(VALUE_BYTES))


def _sign(value: str, key: bytes) -> str:
    # "decline:" keeps these signatures apart from every other use of the instance key
    return _b32(hmac.new(key, f"decline:{value}".encode(), hashlib.sha256).digest()[:_SIG_BYTES])


def token(value: str, key: bytes) -> str:
    """The token for a case's decline value."""
    if not re.fullmatch(_VALUE, value):
        raise ValueError("not a decline value")
    return f"{value}-{_sign(value, key)}"


def value_of(candidate: str, key: bytes) -> str | None:
    """The decline value a token stands for, or None if it is malformed or its signature is not
    this instance's (forged, tampered with, or made of another case's value and signature)."""
    match = _TOKEN.fullmatch(candidate)
    if match is None:
        return None
    value, signature = match.groups()
    return value if hmac.compare_digest(signature, _sign(value, key)) else None


def link(public_url: str, value: str, key: bytes) -> str:
    """The link the reviewer's mail carries (`[api] public_url` as the platform's proxy serves it)."""
    return f"{public_url.rstrip('/')}{PATH}{token(value, key)}"
