"""The last line of defence: does an address survive anywhere in an encoded message?

Looks where a reader or a program could find it: the raw bytes, every header decoded (RFC 2047),
every part decoded from its transfer encoding and charset (a byte-order mark first), nested
messages decoded when their body was encoded as a whole, the text of HTML as a browser shows it,
and the decoded bytes of every leaf (UTF-16 and UTF-32 of both byte orders), with the forms
relay.redact knows (case, URL-encoding however often repeated, HTML entities, invisible characters
between the characters). Base64 and uuencoded text anywhere (a data: URI, an armored signature,
a link wrapper's parameter) is searched for the address's encoded forms at each of the three
alignments. Quoted-printable soft line breaks are undone by decoding.
"""

from __future__ import annotations

import binascii
import contextlib
import re
from collections.abc import Iterator
from email.message import MIMEPart

from relay.core import charsets, containers, markup, redact, unwrap
from relay.core.compose import PARSE_ERRORS, parse_bytes

_TEXT_CHARSETS: tuple[str, ...] = ("utf-8", "latin-1")
# what 8-bit text that declares no charset may be, besides UTF-8 and Latin-1: a client that
# detects the charset shows it in one of these
_LEGACY_CHARSETS: tuple[str, ...] = ("shift_jis", "euc-jp", "iso-2022-jp", "gb18030", "big5", "euc-kr",
                                     "windows-1251", "koi8-r", "windows-1250", "iso-8859-7", "utf-16-le",
                                     "utf-16-be")


def views(raw: bytes) -> Iterator[str | bytes]:
    """Every view of a message in which an address could hide: text as decoded strings; the raw
    message and the decoded payloads of its leaves as bytes (searched as ASCII, UTF-16 and UTF-32
    without making decoded copies of megabytes)."""
    yield raw
    try:
        msg = parse_bytes(raw)
    except PARSE_ERRORS:
        return
    unwrap.unwrap(msg)  # raises when it cannot: the caller refuses what it cannot read (fail closed)
    for part in list(msg.walk()):
        yield from part_views(part)


def part_views(part: MIMEPart) -> Iterator[str | bytes]:
    """The views of one part beyond its text as written (which the caller searches whole): its
    headers with encoded words decoded, and, for a leaf, its decoded content."""
    for name, value in part.raw_items():
        if "=?" not in value:
            continue  # no encoded words: the decoded header says what the raw one says
        with contextlib.suppress(*PARSE_ERRORS):
            yield f"{name}: {part.get(name)}"
    if part.is_multipart():
        return
    markup_type = part.get_content_maintype() == "text" and part.get_content_subtype() in markup.MARKUP_SUBTYPES
    if part.get_content_maintype() == "text" and _as_written(part):
        encoded = part.get_payload()
        if isinstance(encoded, str) and _renders(encoded, markup_type):
            yield markup.visible_text(encoded)
        return
    payload = _decoded(part)
    if not isinstance(payload, bytes):
        return
    yield payload  # searched as bytes: ASCII-compatible text, UTF-16 and UTF-32
    if part.get_content_maintype() != "text":
        yield from containers.insides(payload)  # compressed documents: PDF pages, zip, gzip
        return
    texts = [charsets.decoded_text(part)]
    declared = part.get_content_charset()
    guesses = _TEXT_CHARSETS + (_LEGACY_CHARSETS if declared in (None, "us-ascii") and not payload.isascii() else ())
    for charset in dict.fromkeys((declared or "utf-8", *guesses)):
        try:
            texts.append(payload.decode(charset, errors="ignore"))
        except LookupError:
            continue
    yield from texts
    if _renders(texts[0], markup_type):
        yield markup.visible_text(texts[0])


def _renders(text: str, markup_type: bool) -> bool:
    """Whether a text part is also read as a browser would show it: markup, and plain text with
    tags in it (a client that guesses may render it; what would show is refused, not forwarded)."""
    return markup_type or ("<" in text and ">" in text)


# charsets in which ASCII text reads as itself (not so: UTF-7, UTF-16, ISO-2022-JP, EBCDIC)
_ASCII_AS_ITSELF = re.compile(r"(us-)?ascii|utf-?8|iso-?8859-\d+|latin-?1|windows-125\d|cp125\d")


def _as_written(part: MIMEPart) -> bool:
    """True when decoding would give back the text as written: ASCII without a transfer encoding,
    in a charset that reads ASCII as ASCII."""
    encoded = part.get_payload()
    return isinstance(encoded, str) and encoded.isascii() and \
        part.get("Content-Transfer-Encoding", "7bit").strip().lower() in ("7bit", "8bit", "binary") and \
        _ASCII_AS_ITSELF.fullmatch(part.get_content_charset("us-ascii")) is not None


def _decoded(part: MIMEPart) -> bytes | None:
    """A leaf's content as bytes. Base64 is decoded straight from the parsed text (the email
    package first splits it into lines and joins them again: two more copies of a large
    attachment); binascii skips line breaks and stray characters as mail clients do."""
    encoded = part.get_payload()
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64" and isinstance(encoded, str):
        with contextlib.suppress(ValueError):  # binascii.Error, or text that is not ASCII
            return binascii.a2b_base64(encoded)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


def found(raw: bytes, *addresses: str) -> bool:
    """Does any of `addresses` survive in any view of `raw`? (The message is parsed once for all.)"""
    return _in_any(views(raw), addresses)


def found_in_leaf(leaf: MIMEPart, *addresses: str) -> bool:
    """The same search over one detached leaf: its encoded text as written, and its views. Used
    for large attachments that are written into a forward apart from the rest (relay.sanitize);
    together with `found` on the rest, it covers every view of the whole."""
    encoded = leaf.get_payload()
    return _in_any(iter([encoded] if isinstance(encoded, str) else []), addresses) or \
        _in_any(part_views(leaf), addresses)


def _in_any(views: Iterator[str | bytes], addresses: tuple[str, ...]) -> bool:
    return any(_in_view(view, address) for view in views for address in addresses)


def _in_view(view: str | bytes, address: str) -> bool:
    if isinstance(view, bytes):
        return redact.contains_address_bytes(view, address) or \
            any(form in view for form in redact.transfer_forms(address))
    return redact.contains_address(view, address) or \
        any(form in view for form in redact.transfer_forms_text(address))
