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
# Bytes of a document or image: ASCII (and UTF-8) text shows in latin-1, UTF-16 text in its own view.
_BINARY_CHARSETS = ("latin-1", "utf-16-le", "utf-16-be")


def views(raw: bytes) -> Iterator[str]:
    """Every decoded view of a message in which an address could hide."""
    yield raw.decode("latin-1")
    try:
        msg: EmailMessage = BytesParser(policy=PARSE_POLICY).parsebytes(raw)
        parts = list(msg.walk())
    except (email.errors.MessageError, ValueError, LookupError, RecursionError):
        return
    for part in parts:
        for name, value in part.raw_items():
            yield f"{name}: {value}"
            with contextlib.suppress(email.errors.MessageError, ValueError, IndexError, TypeError,
                                     AttributeError):
                yield f"{name}: {part.get(name)}"
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_maintype() == "text":
            charsets: tuple[str, ...] = (part.get_content_charset() or "utf-8", *_TEXT_CHARSETS)
        else:
            charsets = _BINARY_CHARSETS
        for charset in dict.fromkeys(charsets):
            try:
                yield payload.decode(charset, errors="ignore")
            except LookupError:
                continue


def found(raw: bytes, address: str) -> bool:
    return any(redact.contains_address(view, address) for view in views(raw))
