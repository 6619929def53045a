"""Things written into a text part that name the sender in a form no text replacement reaches
(pure: text in, text and what was removed out).

- Inline OpenPGP: an armored signature (`-----BEGIN PGP SIGNATURE-----`) carries the signer's
  key id and often their user ID, which `gpg --verify` prints without the key; an armored public
  key block carries the user IDs. Both are dropped with the note, as PGP/MIME signatures and key
  attachments are; the "signed message" header lines and dash-escaping around the signed text go
  too, so the text reads as written.
- Inline uuencoded files (`begin 644 name` ... `end`): dropped when they are a contact card, a
  calendar entry or hold the sender's address; otherwise left as the sender attached them.
- `data:` URIs (in links, images, CSS): a vCard or calendar entry, or anything that decodes to the
  sender's address, is replaced by an empty `data:,`.
- Link parameters that carry the address in base64 (tracking links of CRMs, link wrappers that
  encode the whole target): the parameter is removed from the link; the link still works as far
  as it can without it.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from relay.core.redact import contains_address_bytes

_ARMOR = re.compile(
    r"^(?P<quote>[ \t>]*)-----BEGIN PGP (?P<what>SIGNATURE|PUBLIC KEY BLOCK)-----.*?"
    r"(?:^(?P=quote)-----END PGP (?P=what)-----[ \t]*(?:\r?\n|\Z)|\Z)", re.DOTALL | re.MULTILINE)
_SIGNED_HEADER = re.compile(r"^(?P<quote>[ \t>]*)-----BEGIN PGP SIGNED MESSAGE-----[ \t]*\r?\n"
                            r"(?:(?P=quote)[ \t]*Hash:[^\n]*\n)*(?:(?P=quote)[ \t]*\r?\n)?", re.MULTILINE)
_DASH_ESCAPED = re.compile(r"^([ \t>]*)- (?=-)", re.MULTILINE)
_HTML_ARMOR = re.compile(r"-----BEGIN PGP (SIGNATURE|PUBLIC KEY BLOCK)-----.*?(?:-----END PGP \1-----|\Z)"
                         r"|-----BEGIN PGP SIGNED MESSAGE-----(?:(?:<br\s*/?>|\s)*Hash:[^<\n]*)*", re.DOTALL)
_UUENCODED = re.compile(r"^begin [0-7]{3,4} (?P<name>[^\r\n]+)\r?\n(?P<body>.*?)^end[ \t]*(?:\r?\n|\Z)",
                        re.DOTALL | re.MULTILINE)
_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]*/?[\w.+-]*)(?P<params>(?:;[^,;\"'\s()<>]*)*),"
                       r"(?P<data>[^\"'\s()<>]*)", re.IGNORECASE)
_CARD_TYPES = {"text/vcard": "vcard", "text/x-vcard": "vcard", "text/directory": "vcard",
               "text/calendar": "calendar", "text/x-vcalendar": "calendar", "application/pgp-keys": "pgp_key"}
_CARD_CONTENT = {b"BEGIN:VCARD": "vcard", b"BEGIN:VCALENDAR": "calendar",
                 b"-----BEGIN PGP PUBLIC KEY BLOCK-----": "pgp_key"}
_CARD_SUFFIXES = {"vcf": "vcard", "vcard": "vcard", "ics": "calendar", "vcs": "calendar", "asc": "pgp_key"}
_MAX_NESTING = 3


@dataclass(frozen=True)
class Stripped:
    text: str
    removed: tuple[str, ...]  # kinds, as relay.parts names them ("signature", "vcard", "embedded", ...)


def strip(text: str, html: bool, hidden: Sequence[str]) -> Stripped:
    """`text` (a text/plain or, with `html`, a text/html part) without what names the sender."""
    removed: list[str] = []
    if "-----BEGIN PGP" in text:
        text = _strip_armor_html(text, removed) if html else _strip_armor(text, removed)
    if "begin " in text:
        text = _UUENCODED.sub(lambda m: _uuencoded(m, hidden, removed), text)
    if "data:" in text.lower():
        text = _DATA_URI.sub(lambda m: _data_uri(m, hidden, removed), text)
    if "://" in text:
        text = _URL.sub(lambda m: _RUN.sub(lambda r: _run(r, hidden), m.group(0)), text)
    return Stripped(text, tuple(removed))


_URL = re.compile(r"https?://[^\s\"'<>()]{16,}", re.IGNORECASE)
# base64 or base64url in a link (a path segment or a parameter's value), possibly percent-encoded
_RUN = re.compile(r"(?:[A-Za-z0-9+/_-]|%2[bBfF])[A-Za-z0-9+/_%-]{15,}(?:=|%3[dD])*")


def _run(match: re.Match[str], hidden: Sequence[str]) -> str:
    """A base64 run in a link, removed if it decodes (at any of its first four characters: a
    segment may begin with letters of its own) to something that holds the sender's address."""
    run = urllib.parse.unquote(urllib.parse.unquote(match.group(0))).encode("ascii", "ignore")
    for start in range(4):
        data = _base64(run[start:].rstrip(b"="))
        if data and any(contains_address_bytes(data, address) for address in hidden):
            return ""
    return match.group(0)


def _base64(run: bytes) -> bytes:
    """A run of base64 or base64url, padded as needed; undecodable bytes come out empty."""
    standard = run.replace(b"-", b"+").replace(b"_", b"/")
    try:
        return binascii.a2b_base64(standard + b"=" * (-len(standard) % 4))
    except binascii.Error:
        return b""


def _strip_armor(text: str, removed: list[str]) -> str:
    def drop(match: re.Match[str]) -> str:
        removed.append("signature" if match.group("what") == "SIGNATURE" else "pgp_key")
        return ""

    text = _ARMOR.sub(drop, text)
    if _SIGNED_HEADER.search(text):
        text = _DASH_ESCAPED.sub(r"\1", _SIGNED_HEADER.sub("", text))
    return text


def _strip_armor_html(source: str, removed: list[str]) -> str:
    def drop(match: re.Match[str]) -> str:
        if match.group(1):
            removed.append("signature" if match.group(1) == "SIGNATURE" else "pgp_key")
        return ""

    return _HTML_ARMOR.sub(drop, source)


def _uuencoded(match: re.Match[str], hidden: Sequence[str], removed: list[str]) -> str:
    data = bytearray()
    for line in match.group("body").splitlines():
        try:
            data += binascii.a2b_uu(line)
        except binascii.Error:
            continue  # a line that is not uuencoded (a broken block): the final scan still reads it
    kind = _kind(bytes(data), hidden, match.group("name"))
    if kind is None:
        return match.group(0)
    removed.append(kind)
    return ""


def _data_uri(match: re.Match[str], hidden: Sequence[str], removed: list[str]) -> str:
    kind = _CARD_TYPES.get(match.group("type").lower()) or _kind(_decoded_uri(match), hidden)
    if kind is None:
        return match.group(0)
    removed.append(kind)
    return "data:,"


def _decoded_uri(match: re.Match[str]) -> bytes:
    data = urllib.parse.unquote_to_bytes(match.group("data"))
    if ";base64" in match.group("params").lower():
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return data
    return data


def _kind(data: bytes, hidden: Sequence[str], name: str = "", nesting: int = 0) -> str | None:
    """What embedded content is, if it must go: a card, calendar or key by its content or name; or
    "embedded" when it holds the sender's address (also inside a data: URI inside it)."""
    head = data[:4096].lstrip()
    for marker, kind in _CARD_CONTENT.items():
        if head.startswith(marker):
            return kind
    suffix = name.strip().lower().rpartition(".")[2]
    if name and suffix in _CARD_SUFFIXES:
        return _CARD_SUFFIXES[suffix]
    if any(contains_address_bytes(data, address) for address in hidden):
        return "embedded"
    if nesting < _MAX_NESTING and b"data:" in data.lower():
        text = data.decode("latin-1")
        if any(_kind(_decoded_uri(inner), hidden, nesting=nesting + 1) for inner in _DATA_URI.finditer(text)):
            return "embedded"
    return None
