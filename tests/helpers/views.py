"""Reading a forward the way a test judges it: every decoded view computed without the relay's
helpers, and the leak check by the tests' own leak reader."""

from __future__ import annotations

import email
import email.policy
import html
import re
import urllib.parse

from tests.helpers import leak_reader

REVIEWER = "max.mueller@example.de"


def independent_texts(raw: bytes) -> list[str]:
    """Every decoded view of a message, computed without the relay's own helpers."""
    out = [raw.decode("latin-1")]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        out += [f"{k}: {v}" for k, v in part.items()]
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            out += [payload.decode(cs, errors="ignore") for cs in ("utf-8", "latin-1")]
    views = []
    for text in out:
        low = text.lower()
        views += [low, html.unescape(low), urllib.parse.unquote(low), re.sub(r"=\r?\n", "", low)]
    return views


def assert_no_leak(raw: bytes, address: str = REVIEWER) -> None:
    """Judged by the tests' own leak reader, which shares nothing with the relay's scan."""
    hits = leak_reader.finds(raw, address)
    assert not hits, f"address leaked: {hits[0][:200]}"

