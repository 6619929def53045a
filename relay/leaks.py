"""The last line of defence: does an address survive anywhere in an encoded message?

Looks where a reader or a program could find it: the raw bytes, every header decoded (RFC 2047),
and every part decoded from its transfer encoding and charset, with the forms relay.redact knows
(case, URL-encoding, HTML entities). Quoted-printable soft line breaks are undone by decoding.
"""

from __future__ import annotations

import contextlib
import email.errors
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser

from . import redact
from .compose import PARSE_POLICY

_TEXT_CHARSETS = ("utf-8", "latin-1")


def views(raw: bytes) -> Iterator[str | bytes]:
    """Every view of a message in which an address could hide: text as decoded strings; the raw
    message and the payloads of documents and images as bytes (searched as ASCII and UTF-16
    without making decoded copies of megabytes)."""
    yield raw
    try:
        msg: EmailMessage = BytesParser(policy=PARSE_POLICY).parsebytes(raw)
        parts = list(msg.walk())
    except (email.errors.MessageError, ValueError, LookupError, RecursionError):
        return
    for part in parts:
        for name, value in part.raw_items():
            yield f"{name}: {value}"
            if "=?" not in value:
                continue  # no encoded words: the decoded header says what the raw one says
            with contextlib.suppress(email.errors.MessageError, ValueError, IndexError, TypeError,
                                     AttributeError):
                yield f"{name}: {part.get(name)}"
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_maintype() != "text":
            yield payload
            continue
        for charset in dict.fromkeys((part.get_content_charset() or "utf-8", *_TEXT_CHARSETS)):
            try:
                yield payload.decode(charset, errors="ignore")
            except LookupError:
                continue


def found(raw: bytes, address: str) -> bool:
    return any(redact.contains_address_bytes(view, address) if isinstance(view, bytes)
               else redact.contains_address(view, address) for view in views(raw))
