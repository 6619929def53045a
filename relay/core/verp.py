"""Signed VERP envelope senders: bounces come back to the relay, never to a party, and name the
delivery they are about. A forged bounce address fails the HMAC check (constant time)."""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "bounce-"
_SIG_HEX = 16  # 64 bits
_LOCAL = re.compile(rf"bounce-(\d+)-([0-9a-f]{{{_SIG_HEX}}})")


def _sign(delivery_id: int, key: bytes) -> str:
    return hmac.new(key, f"verp:{delivery_id}".encode(), hashlib.sha256).hexdigest()[:_SIG_HEX]


def envelope_sender(delivery_id: int, key: bytes, domain: str) -> str:
    return f"{PREFIX}{delivery_id}-{_sign(delivery_id, key)}@{domain}"


def looks_like_verp(local_part: str) -> bool:
    return local_part.lower().startswith(PREFIX)


def delivery_id(local_part: str, key: bytes) -> int | None:
    """The delivery a bounce address stands for, or None if it is malformed or forged."""
    match = _LOCAL.fullmatch(local_part.lower())
    if not match:
        return None
    number = int(match.group(1))
    return number if hmac.compare_digest(match.group(2), _sign(number, key)) else None
