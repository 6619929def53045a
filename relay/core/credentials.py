"""API keys and request fingerprints: what a key looks like, how it is kept, how a retried
request is recognised. Pure: randomness from `secrets`, no storage.

A key is `rk_` and 43 characters of URL-safe base64 (256 random bits): the prefix lets secret
scanners and people recognise it. It is shown once; the relay keeps only its SHA-256, which is
enough for keys this long (a slow password hash protects guessable passwords, not random keys)
and lets a request's key be found with one indexed look-up.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from relay.core.errors import InvalidInput

PREFIX = "rk_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def new_api_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def key_name(name: str) -> str:
    """A key's name as admins and logs know it: letters, digits, dot, dash and underscore."""
    if not _NAME.fullmatch(name):
        raise InvalidInput("name", f"{name!r}: use 1-100 letters, digits, '.', '-' or '_' (starting with a "
                                   "letter or digit)", f"NAME: {name!r} must be 1-100 letters, digits, '.', "
                                   "'-' or '_', starting with a letter or digit")
    return name


def request_digest(method: str, path: str, body: bytes, key: bytes) -> str:
    """What makes two requests with one Idempotency-Key the same request: a keyed hash (the
    instance's secret), since the body names the reviewer and a plain hash of it could be matched
    against guessed bodies by whoever reads the database."""
    return hmac.new(key, b"\0".join([method.upper().encode(), path.encode(), body]), hashlib.sha256).hexdigest()
