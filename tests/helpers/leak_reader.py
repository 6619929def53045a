"""An independent leak reader for the tests: every text in which a person or a program could find an
address in an encoded message, built without the relay's own scanner (relay/leaks.py, relay/redact.py),
so that a blind spot shared by the relay and its tests cannot hide a leak.

It is generous on purpose: it decodes everything it can in every way it can, because a needless view
costs nothing while a missing one hides a leak. It splits MIME itself on the raw bytes, so a message/*
part whose body was encoded as a whole (which RFC 2046 forbids but clients write) is decoded from the
bytes that were sent, not from the stdlib's re-parse of it as a headerless message. The work is bounded
by a nesting depth and a budget of characters read, so hostile input cannot hang the tests.
"""

from __future__ import annotations

import binascii
import contextlib
import heapq
import html
import itertools
import quopri
import re
import string
import unicodedata
from collections.abc import Callable
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from typing import TypeVar
from urllib.parse import unquote, unquote_to_bytes

import idna
from asn1crypto import cms
from lxml import etree
from lxml import html as lxml_html

MAX_DEPTH = 40  # nesting steps (part in part, decoding of a decoding); a forward in a forward takes two
MAX_PARTS = 2000  # body parts read per multipart
MAX_WORK = 150_000_000  # characters and bytes read in all; a few seconds
MAX_PIECES = 64  # texts or payloads found in one text that are read one by one; the rest are read together

T = TypeVar("T")
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]")
_URL_SPACE = re.compile(r"[\t\r\n]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")  # lxml refuses these
_HTML_HINT = re.compile(r"</[a-z][a-z0-9]*\s*>|<(?:wbr|br|img|meta|!--|!doctype)\b", re.I)  # not binary noise
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LEADING_NEWLINE = re.compile(rb"\A\r?\n")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qb])\?([^?]*)\?=", re.I)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)\s+(?==\?)")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}=*(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/][A-Za-z0-9+/_-]{3,}=*)*")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")
_DATA_URI = re.compile(r"data:([^,\s\"'()<>]*),([^\s\"'()<>]*)", re.I)
_UU_BLOCK = re.compile(r"^begin [0-7]{3,4} [^\r\n]*\r?\n(.*?)^end[ \t]*\r?$", re.M | re.S)
_PROOFPOINT_V2 = re.compile(r"urldefense\.proofpoint\.com/v2/url\?u=([^&\s\"'<>]+)", re.I)
_PROOFPOINT_V2_ESCAPES = str.maketrans("-_", "%/")
_PROOFPOINT_V3 = re.compile(r"urldefense\.com/v3/__(.+?)__;([A-Za-z0-9_-]*)", re.I)
_V3_TOKEN = re.compile(r"\*(\*.)?")
_V3_RUNS = {c: n for n, c in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_", 2)}
_DSN_ADDRESS = re.compile(r"\b(?:rfc822|utf-8)[ \t]*;[ \t]*([^\s;]+)", re.I)  # Original-Recipient: rfc822;...
_XTEXT = re.compile(r"\+([0-9A-F]{2})|\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 3461 `+40`, RFC 6533 `\x{40}`
_QUERY_VALUE = re.compile(r"[?&;][\w.-]*=([^&\s\"'<>]+)", re.A)
_PKCS7_OID = bytes.fromhex("2a864886f70d0107")  # 1.2.840.113549.1.7, the CMS content types
_HTML_PARSER = lxml_html.HTMLParser(remove_comments=True, huge_tree=True)


def views(raw: bytes) -> list[str]:
    """Every text in which a reader or a program could find an address, lowercased."""
    reader = _Reader()
    reader.read(raw)
    return list(reader.views)


def finds(raw: bytes, address: str) -> list[str]:
    """The views (excerpts around the hit) in which `address` (either IDN spelling) appears; [] if none."""
    wanted = _spellings(address)
    hits = []
    for view in views(raw):
        at = min((i for i in (view.find(w) for w in wanted) if i >= 0), default=-1)
        if at >= 0:
            hits.append(view[max(0, at - 60): at + len(address) + 60])
    return hits


def _spellings(address: str) -> set[str]:
    """The address with its domain as Unicode and as A-labels: `bücher` and `xn--bcher-kva` are one name."""
    local, at, domain = unicodedata.normalize("NFC", address.strip().lower()).rpartition("@")
    if not at:
        return {domain}
    return {f"{local}@{form}" for form in _domain_forms(domain)}


def _domain_forms(domain: str) -> set[str]:
    """UTS 46 through `idna` first, Python's IDNA 2003 codec where `idna` refuses a name."""
    converters: list[Callable[[str], str]] = [
        lambda d: idna.encode(d, uts46=True).decode("ascii"), lambda d: idna.decode(d, uts46=True),
        lambda d: d.encode("idna").decode("ascii"), lambda d: d.encode("ascii").decode("idna"),
    ]
    forms = {domain}
    for convert in converters:
        try:
            forms.add(convert(domain).lower())
        except (idna.IDNAError, UnicodeError, ValueError):
            continue
    return forms


class _Reader:
    """Collects the views breadth first, so that one huge part cannot use up the budget before its siblings
    are read. Each text and byte string is read once; MAX_DEPTH and MAX_WORK bound the rest."""

    def __init__(self) -> None:
        self.views: dict[str, None] = {}
        self.seen: set[tuple[str, str | bytes]] = set()
        self.work = 0
        self.todo: list[tuple[int, int, Callable[..., None], tuple[object, ...]]] = []
        self.order = itertools.count()

    def read(self, raw: bytes) -> None:
        self._later(0, self.message, raw)
        while self.todo:
            depth, _, step, args = heapq.heappop(self.todo)
            step(depth, *args)

    def _later(self, depth: int, step: Callable[..., None], *args: object) -> None:
        if depth <= MAX_DEPTH:
            heapq.heappush(self.todo, (depth, next(self.order), step, args))

    def _fresh(self, kind: str, item: str | bytes) -> bool:
        if (kind, item) in self.seen or self.work + len(item) > MAX_WORK:
            return False
        self.seen.add((kind, item))
        self.work += len(item)
        return True

    def message(self, depth: int, raw: bytes) -> None:
        """A whole message, or the body of a message/* part: its bytes as text, then its MIME structure."""
        if self._fresh("message", raw):
            self._later(depth, self.text, raw.decode("latin-1"))
            self._later(depth, self.text, raw.decode("utf-8", "replace"))
            self._later(depth, self.entity, raw, "text/plain")

    def entity(self, depth: int, raw: bytes, default_type: str) -> None:
        """One MIME entity: its headers, then its parts, its enclosed message or its decoded content."""
        head, body = _split_entity(raw)
        headers = _parse_headers(head)
        headers.set_default_type(default_type)
        self._later(depth, self.headers, headers)
        ctype = headers.get_content_type()
        cte = str(headers.get("content-transfer-encoding", "")).strip().lower()
        boundary = headers.get_boundary()
        parts = _split_parts(body, boundary) if ctype.startswith("multipart/") and boundary else []
        if len(parts) > 1:
            inner_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for part in parts[:MAX_PARTS]:
                self._later(depth + 1, self.entity, part, inner_default)
        elif ctype.startswith("message/"):  # rfc822, global, delivery-status, disposition-notification, ...
            self._later(depth + 1, self.message, _decode_transfer(body, cte))
        else:
            self._later(depth + 1, self.content, _decode_transfer(body, cte), headers.get_content_charset())

    def headers(self, depth: int, headers: Message) -> None:
        """Each header as written and decoded (RFC 2047 words, RFC 2231 parameters such as filenames)."""
        for name, value in headers.items():
            value = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            self._later(depth, self.text, f"{name}: {value}")
            self._later(depth, self.text, f"{name}: {_decode_words(_FOLD.sub('', value))}")
        for name in ("content-type", "content-disposition"):
            for _key, param in headers.get_params([], header=name):
                try:
                    self._later(depth, self.text, _decode_words(collapse_rfc2231_value(param)))
                except (LookupError, UnicodeError, ValueError):
                    continue

    def content(self, depth: int, data: bytes, charset: str | None) -> None:
        """Decoded bytes: as text in every likely encoding, and as a message or CMS structure if they are one."""
        if not self._fresh("bytes", data):
            return
        for text in _decodings(data, charset):
            self._later(depth, self.text, text)
        for text in _wide_decodings(data):  # the wrong alignment or byte order is noise: look inside text only
            if len(text.encode("ascii", "ignore")) * 4 >= len(text):
                self._later(depth, self.text, text)
            else:
                self._view(text, fold=False)
        if _HEADER_LINE.match(data):
            self._later(depth + 1, self.message, data)
        inner = _cms_content(data) if _PKCS7_OID in data[:64] else None
        if inner:
            self._later(depth + 1, self.message, inner)

    def _view(self, text: str, fold: bool = True) -> str:
        """Keep a text as written, without invisible characters, and NFKC-folded (fullwidth letters and at
        signs) unless it is noise; return it without invisible characters."""
        clean = _INVISIBLE.sub("", text)
        for view in (text, clean, unicodedata.normalize("NFKC", clean)) if fold else (text, clean):
            self.views.setdefault(view.lower())
        return clean

    def text(self, depth: int, text: str, rendered: bool = False) -> None:
        """A text as written, without invisible characters, NFKC-folded, and everything hidden inside it. What
        a browser rendered is not rendered again: its `<wbr>` is text a reader sees, and binary noise that
        looks like markup would otherwise be re-rendered at every level."""
        if not self._fresh("text", text):
            return
        clean = self._view(text)
        is_html = not rendered and _HTML_HINT.search(clean) is not None
        derived = [d for d in _derived_texts(clean, is_html) if d and d != clean]
        for piece in _bundled(derived, "\n".join):
            self._later(depth + 1, self.text, piece, rendered or is_html)
        embedded = _embedded_bytes(clean)
        for payload, charset in _bundled(embedded, lambda rest: (b"\n".join(p for p, _ in rest), None)):
            self._later(depth + 1, self.content, payload, charset)


def _bundled(pieces: list[T], join: Callable[[list[T]], T]) -> list[T]:
    """The first MAX_PIECES pieces one by one and the rest joined into one, so that a text full of small
    finds (a list of hashes looks like base64, a page full of links) costs a few reads, not thousands."""
    return pieces if len(pieces) <= MAX_PIECES else [*pieces[:MAX_PIECES], join(pieces[MAX_PIECES:])]


def _split_entity(raw: bytes) -> tuple[bytes, bytes]:
    """Headers and body at the first blank line; text that does not start with a header has none."""
    if not _HEADER_LINE.match(raw):
        return b"", _LEADING_NEWLINE.sub(b"", raw)
    blank = _BLANK_LINE.search(raw)
    return (raw, b"") if blank is None else (raw[: blank.start()], raw[blank.end():])


def _parse_headers(head: bytes) -> Message:
    return BytesHeaderParser().parsebytes(head + b"\r\n\r\n")


def _split_parts(body: bytes, boundary: str) -> list[bytes]:
    """The body parts between the delimiter lines (the preamble and epilogue come along; they are text too)."""
    delimiter = re.escape(boundary.encode("utf-8", "surrogateescape"))
    lines = re.compile(rb"^--" + delimiter + rb"(?:--)?[ \t]*\r?$", re.M)
    return [_LEADING_NEWLINE.sub(b"", part) for part in lines.split(body)]


def _decode_transfer(body: bytes, cte: str) -> bytes:
    if cte == "base64":
        return _b64(body)
    if cte == "quoted-printable":
        return quopri.decodestring(body)
    if cte in ("x-uuencode", "uuencode", "x-uue"):
        return _uudecode(body.decode("latin-1"))
    return body


def _b64(data: bytes) -> bytes:
    """Lenient base64 (standard or URL-safe): stray characters dropped, padding repaired."""
    clean = _NOT_B64.sub(b"", data.replace(b"-", b"+").replace(b"_", b"/"))
    clean = clean[:-1] if len(clean) % 4 == 1 else clean + b"=" * (-len(clean) % 4)
    return binascii.a2b_base64(clean)


def _uudecode(block: str) -> bytes:
    """uuencoded lines; a line with trailing garbage is cut to the length its first character gives."""
    out = bytearray()
    for line in block.splitlines():
        data = line.encode("latin-1", "replace")
        if not data or data.startswith(b"begin ") or data.strip() == b"end":
            continue
        try:
            out += binascii.a2b_uu(data)
        except binascii.Error:
            try:
                out += binascii.a2b_uu(data[: (((data[0] - 32) & 63) * 4 + 5) // 3])
            except binascii.Error:
                continue
    return bytes(out)


def _decodings(data: bytes, charset: str | None) -> list[str]:
    texts = [data.decode("latin-1"), data.decode("utf-8", "replace")]
    with contextlib.suppress(LookupError, UnicodeError, ValueError):
        texts += [data.decode(charset, "replace")] if charset else []
    return texts


def _wide_decodings(data: bytes) -> list[str]:
    """UTF-16/32 in both byte orders at every alignment, whatever the declared charset, since a document
    need not declare (or mark with a byte-order mark, which is dropped as invisible) the encoding it is in."""
    units = (("utf-16-le", 2), ("utf-16-be", 2), ("utf-32-le", 4), ("utf-32-be", 4))
    return [data[shift: shift + (len(data) - shift) // unit * unit].decode(codec, "replace")
            for codec, unit in units for shift in range(unit)]


def _decode_words(value: str) -> str:
    """RFC 2047 encoded words, leniently: any charset Python knows, UTF-8 otherwise."""

    def word(match: re.Match[str]) -> str:
        raw = match[3].encode("latin-1", "replace")
        data = _b64(raw) if match[2] in "bB" else quopri.decodestring(raw, header=True)
        try:
            return data.decode(match[1].split("*")[0], "replace")
        except LookupError:
            return data.decode("utf-8", "replace")

    return _ENCODED_WORD.sub(word, _BETWEEN_WORDS.sub("", value))


def _derived_texts(text: str, render: bool) -> list[str]:
    """What a browser renders, entities and URL-decoding undone until stable, redirects unwrapped, and the
    xtext of delivery status notifications decoded. (The substring tests only spare long texts a slow regex.)"""
    low = text.lower()
    derived = _render_html(text) if render else []
    if "&" in text or "%" in text:  # one text for both, as each is read again in turn: `&#37;40`, `%26%2364;`
        derived.append(_unquote_all(html.unescape(text)))
    if "urldefense" in low:
        derived += [_unquote_all(m[1].translate(_PROOFPOINT_V2_ESCAPES)) for m in _PROOFPOINT_V2.finditer(text)]
        derived += [_proofpoint_v3(m[1], m[2]) for m in _PROOFPOINT_V3.finditer(text)]
    derived += [_unquote_all(m[1], plus=True) for m in _QUERY_VALUE.finditer(text)]  # Google, Safe Links, ...
    if "rfc822" in low or "utf-8" in low:
        derived += [_XTEXT.sub(lambda x: chr(min(int(x[1] or x[2], 16), 0x10FFFF)), m[1])
                    for m in _DSN_ADDRESS.finditer(text)]
    return derived


def _render_html(text: str) -> list[str]:
    """The text content of the parsed document (comments gone, elements between characters joined) and
    every attribute value, also without the tabs and newlines a URL parser drops."""
    try:
        root = lxml_html.document_fromstring(_CONTROL.sub("", text), parser=_HTML_PARSER)
    except (etree.LxmlError, ValueError):
        return []
    values = [str(v) for element in root.iter(etree.Element) for v in element.attrib.values()]
    shown = "".join(str(piece) for piece in root.itertext())
    return [shown, *values, *(_URL_SPACE.sub("", v) for v in values if _URL_SPACE.search(v))]


def _unquote_all(text: str, plus: bool = False) -> str:
    """Percent-decoding until nothing changes: `%252540` is an `@` encoded three times. (Not urllib's
    unquote, which is slow on long non-ASCII texts such as a binary part read as Latin-1.)"""
    text = text.replace("+", " ") if plus else text
    for _ in range(32):
        decoded = _PERCENT_RUN.sub(lambda m: _utf8_or_latin1(bytes.fromhex(m[0].replace("%", ""))), text)
        if decoded == text:
            break
        text = decoded
    return text


def _utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _proofpoint_v3(url: str, encoded: str) -> str:
    """URL Defense v3 writes each unsafe character as `*` (a run as `**` and a length letter) and lists
    them, base64url-encoded, after the `__;`."""
    chars = iter(_b64(encoded.encode("ascii")).decode("utf-8", "replace"))

    def token(match: re.Match[str]) -> str:
        count = _V3_RUNS.get(match[1][-1], 1) if match[1] else 1
        return "".join(next(chars, "") for _ in range(count))

    return _unquote_all(_V3_TOKEN.sub(token, url))


def _embedded_bytes(text: str) -> list[tuple[bytes, str | None]]:
    """Payloads hidden in a text: data: URIs, uuencoded blocks and base64 runs (an armored PGP signature
    carries the signer's user ID, a pasted blob anything)."""
    found: list[tuple[bytes, str | None]] = []
    for match in _DATA_URI.finditer(text):
        params = match[1].lower().split(";")
        payload = unquote(match[2])
        data = _b64(payload.encode("latin-1", "replace")) if "base64" in params else unquote_to_bytes(match[2])
        charset = next((p[8:] for p in params if p.startswith("charset=")), None)
        found.append((data, charset))
    found += [(_uudecode(m[1]), None) for m in _UU_BLOCK.finditer(text)]
    found += [(_b64(m[0].encode("ascii")), None) for m in _B64_RUN.finditer(text)]
    return found


def _cms_content(data: bytes) -> bytes | None:
    """The MIME entity inside opaque S/MIME: signed-data's encapsulated content, compressed-data's
    decompressed content. Enveloped (encrypted) data cannot be read."""
    try:
        info = cms.ContentInfo.load(data)
        kind = info["content_type"].native
        if kind == "signed_data":
            inner = info["content"]["encap_content_info"]["content"].native
        elif kind == "compressed_data":
            inner = info["content"].decompressed
        else:
            inner = info["content"].native if kind == "data" else None
    except Exception:  # asn1crypto raises many kinds of error on malformed input; the bytes were read anyway
        return None
    return inner if isinstance(inner, bytes) else None
