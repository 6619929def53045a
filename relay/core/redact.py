"""Finding and replacing an address in text, in the forms mail clients and HTML put it in.

The text is decoded first (relay.forms.decode: percent-escapes however often repeated, character
references, CSS and script escapes, Proofpoint's and quoted-printable's coded punctuation), then
searched with a small pattern per address (either case, compatibility forms, invisible characters
between the characters), so `mailto:max%2Emueller%40example.de` and `max&#46;mueller&#64;example.de`
are found as well as the plain form; a replacement replaces what the match was decoded from. Pure
functions; the sanitiser applies them to decoded text, the final scan to every view of a forward.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from functools import lru_cache

from relay.core import forms


@lru_cache(maxsize=1024)
def address_pattern(address: str) -> re.Pattern[str]:
    """The pattern of `address` over decoded text (relay.forms.pattern).

    No word boundaries on purpose: inside `xmax@example.dev` the reviewer's `max@example.de` is
    still replaced. Over-redacting a stranger's look-alike address costs little; a miss leaks.
    """
    return re.compile(forms.pattern(address))


def spans(text: str, address: str) -> Iterator[tuple[int, int]]:
    """Where in `text` the address is written, in whatever form (start, end), in order."""
    decoded = forms.decode(text)
    for match in address_pattern(address).finditer(decoded.text):
        yield decoded.span(match.start(), match.end())


def replace_address(text: str, address: str, replacement: str) -> str:
    return replace_all(text, {address: replacement})


def contains_address(text: str, address: str) -> bool:
    return address_pattern(address).search(forms.decode(text).text) is not None


# (codec, what "@" looks like in it): UTF-16 and UTF-32 in both byte orders; without it, no such
# form of an address is there (one look for it saves a search)
_WIDE = (("utf-16-le", b"@\x00"), ("utf-32-le", b"@\x00\x00\x00"), ("utf-16-be", b"\x00@"),
         ("utf-32-be", b"\x00\x00\x00@"))


@lru_cache(maxsize=1024)
def _byte_pattern(address: str) -> re.Pattern[bytes]:
    """The same over raw bytes (ASCII-compatible: UTF-8 of the spellings), so attachments and text
    parts can be searched without decoding them into strings first."""
    return re.compile(forms.bytes_pattern(address))


@lru_cache(maxsize=1024)
def _wide_pattern(address: str, codec: str) -> re.Pattern[bytes]:
    """The plain address in UTF-16 or UTF-32 (compiled only for data that has an "@" in it)."""
    skip = b"(?:" + b"|".join(re.escape(c.encode(codec)) for c in forms.WIDE_INVISIBLE) + b")*"
    return re.compile(skip.join(_wide_unit([o.encode(codec) for o in dict.fromkeys((c, c.upper()))])
                                for c in address.strip().lower()))


def _wide_at(data: bytes, at: bytes, address: str) -> bool:
    """Whether an "@" of UTF-16/32 stands in `data` with a character of the same encoding before it
    (in binary data a bare "@\\0" is common; an address's "@" follows a letter or digit)."""
    if "@" not in address:
        return True
    width = len(at)
    little = at[0] == 0x40
    start = data.find(at, width)
    for _ in range(10_000):
        if start < 0:
            return False
        unit = data[start - width:start]
        if (unit[0] if little else unit[-1]) in _ADDRESS_BYTES and unit.count(0) == width - 1:
            return True
        start = data.find(at, start + 1)
    return True  # more than can be looked at one by one: search


_ADDRESS_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+")


def _wide_unit(options: list[bytes]) -> bytes:
    """One character in UTF-16/32: where its cases differ in one byte only, that byte as a class
    (`[mM]\\x00`: a pattern that begins with a class lets the engine skip ahead in C)."""
    if len(options) == 2 and len(options[0]) == len(options[1]):
        differ = [k for k in range(len(options[0])) if options[0][k] != options[1][k]]
        if len(differ) == 1:
            k = differ[0]
            klass = b"[" + re.escape(bytes([options[0][k]])) + re.escape(bytes([options[1][k]])) + b"]"
            return re.escape(options[0][:k]) + klass + re.escape(options[0][k + 1:])
    return b"(?:" + b"|".join(re.escape(o) for o in options) + b")"


def contains_address_bytes(data: bytes, address: str) -> bool:
    """The address in `data` as written, or where coded characters are (decoded around them), or
    in UTF-16 and UTF-32."""
    plain = _byte_pattern(address)
    if plain.search(data) is not None:
        return True
    if any(_wide_pattern(address, codec).search(data) for codec, at in _WIDE if _wide_at(data, at, address)):
        return True
    if not _textual(data) and not _CODED_AT.search(data):
        return False  # an image, compressed data: without a coded "@", decoding finds nothing
    reach = 12 * len(address.encode()) + 16  # the longest spelling of the address around a token
    text = address_pattern(address)
    return any(text.search(window) for window in forms.decoded_windows(data, reach))


_PRINTABLE = bytes(range(32, 127)) + b"\t\n\r"
# "@" coded, as an address in a binary document may carry it (a PDF's link, a URL in an image's
# metadata); in text every coded form is decoded anyway
_CODED_AT = re.compile(rb"[%&\\*=\-\xef](?:(?<=%)(?:25)*(?:40|%34%30)|(?<=&)(?:#0*64|#[xX]0*40|commat)"
                       rb"|(?<=\\)(?:0*40|u0040|x40)|(?<=[-*=])40|(?<=\xef)(?:\xbc\xa0|\xb9\xab))")


def _textual(data: bytes) -> bool:
    """Text of some kind (HTML, XML, JSON, CSV, a PDF's inflated page): where coded characters
    are worth decoding. Judged by its start: mostly printable ASCII, or valid UTF-8."""
    sample = data[:4096]
    if not sample:
        return False
    if len(sample.translate(None, _PRINTABLE)) <= 0.15 * len(sample):
        return True
    try:
        sample[:-4].decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TRANSLATIONS = (bytes.maketrans(_B64, _B64[:62] + b"-_"),                           # base64url
                 bytes.maketrans(_B64, bytes(range(32, 96))),                         # uuencode
                 bytes.maketrans(_B64, b"`" + bytes(range(33, 96))))                  # uuencode, ` for 0


@lru_cache(maxsize=256)
def transfer_forms(address: str) -> tuple[bytes, ...]:
    """The address as it shows inside base64 or uuencoded data, whatever bytes come before it: for
    each of the three alignments, the characters that depend on the address alone. Finds it in a
    data: URI, an armored OpenPGP signature (the signer's user ID), a link wrapper's base64
    parameter or an inline uuencoded file without decoding any of them (as written and in lower
    case: base64 has no case-insensitive form)."""
    forms: list[bytes] = []
    for spelled in dict.fromkeys((address.strip().lower(), address.strip())):
        data = spelled.encode("utf-8")
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + data + b"\0\0")
            core = encoded[-(-8 * shift // 6): 8 * (shift + len(data)) // 6]
            forms += [core, *(core.translate(table) for table in _TRANSLATIONS)]
    return tuple(form for form in dict.fromkeys(forms) if len(form) >= 8)


@lru_cache(maxsize=256)
def transfer_forms_text(address: str) -> tuple[str, ...]:
    return tuple(form.decode("ascii") for form in transfer_forms(address))


_ANY_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def scrub_addresses(text: str) -> str:
    """Text the relay did not write (a smarthost's reply, an exception) with every address-like
    token replaced, before it is stored, logged or shown: such texts quote the recipient."""
    return _ANY_ADDRESS.sub("<address>", text)


def describe(exc: BaseException) -> str:
    """An exception for a log line or an error detail, without any address it may quote."""
    return scrub_addresses(f"{type(exc).__name__}: {exc}")[:500]


def replace_all(text: str, replacements: dict[str, str]) -> str:
    """Replace several addresses in one pass over the decoded text; where two overlap, the longer
    wins (one that contains another is replaced whole)."""
    decoded = forms.decode(text)
    found: list[tuple[int, int, str]] = []
    for address in sorted(replacements, key=len, reverse=True):
        for match in address_pattern(address).finditer(decoded.text):
            start, end = decoded.span(match.start(), match.end())
            if not any(start < e and s < end for s, e, _ in found):
                found.append((start, end, replacements[address]))
    for start, end, replacement in sorted(found, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text
