"""Finding and replacing an address in text, in the forms mail clients and HTML put it in.

A pattern is built per address in which every character may also appear URL-encoded (`%40`) or
as an HTML character reference (`&#64;`, `&#x40;`, `&commat;`), in any mix and any case, so
`mailto:max%2Emueller%40example.de` and `max&#46;mueller&#64;example.de` are found as well as the
plain form. Pure functions; the sanitiser applies them to decoded text.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from html.entities import html5

_NAMED = {"@": ("&commat;",), ".": ("&period;",), "-": ("&hyphen;", "&dash;"), "_": ("&lowbar;",),
          "+": ("&plus;",)}

# Characters a browser or mail client does not show: a soft hyphen or a zero-width character between
# two characters of an address renders as the plain address.
INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"


def _any_case(text: str) -> str:
    """`text` as a pattern matching it in any case, spelled out ([mM]) rather than compiled with
    IGNORECASE, which makes the regular expression engine try every position of a long text."""
    return "".join(re.escape(c) if c.lower() == c.upper() else f"[{c.lower()}{c.upper()}]" if c.isascii()
                   else f"(?:{re.escape(c.lower())}|{re.escape(c.upper())})" for c in text)


def _percent(data: bytes) -> str:
    """Percent-encoded bytes, however often the `%` itself was encoded again (`%40`, `%2540`,
    `%252540`: link wrappers such as Safe Links encode an already encoded link once more)."""
    return "".join("%(?:25)*" + _any_case(f"{byte:02x}") for byte in data)


def _coded_forms(char: str) -> list[tuple[str, str]]:
    """A character as a URL or an HTML page may spell it: percent-encoded (its UTF-8 bytes, and for
    Latin-1 characters the single byte), as a numeric or named character reference, and for
    punctuation as Proofpoint's link wrapper writes it (`-40`, `*40` or `*` for `@`). Each form as
    (the character it begins with, the pattern of the rest)."""
    code = ord(char)
    forms = [("%", _percent(char.encode("utf-8"))[1:]), ("&", f"#0*{code};?"),
             ("&", "#[xX]0*" + _any_case(f"{code:x}") + ";?")]
    if 0x7f < code < 0x100:
        forms.append(("%", _percent(bytes([code]))[1:]))
    if code < 0x80 and not char.isalnum():
        # Proofpoint: v2 writes `-40`; v3 replaces such characters (or the `%` of their
        # percent-encoding) by `*` and lists them, base64-encoded, at the end of the link
        forms += [("-", _any_case(f"{code:02x}")), ("*", ""), ("*", _percent(char.encode())[1:])]
    forms.extend(("&", re.escape(name)) for name, value in html5.items() if value == char)
    forms.extend(("&", _any_case(name[1:])) for name in _NAMED.get(char, ()))
    return list(dict.fromkeys(forms))


def _by_first_character(forms: list[tuple[str, str]]) -> str:
    """Alternatives grouped under the character they begin with (`%(?:..|..)|&(?:..|..)`): the
    engine looks at one character to rule a group out instead of trying every alternative."""
    groups: dict[str, list[str]] = {}
    for first, rest in forms:
        groups.setdefault(first, []).append(rest)
    return "|".join(re.escape(first) + "(?:" + "|".join(rest) + ")" for first, rest in groups.items())


def _char_forms(char: str) -> str:
    """The alternatives for one character. Each begins with a literal character (`m|M`, not `[mM]`),
    so the engine skips ahead to where the first character of an address can begin. An ASCII
    character also in its fullwidth form (U+FF01 to U+FF5E), which East Asian input methods type and
    which reads as the same address."""
    cases = (char.lower(), char.upper())
    wide = tuple(chr(ord(c) + 0xFEE0) for c in cases if "!" <= c <= "~")
    literal = [re.escape(c) for c in dict.fromkeys((*cases, *wide))]
    return "(?:" + "|".join([*literal, _by_first_character(_coded_forms(char))]) + ")"


def _gap(literal: str) -> str:
    """Any number of invisible characters between two characters of an address: written as
    themselves (`literal`: a class for text, alternatives for bytes) or coded."""
    return "(?:" + literal + "|" + _by_first_character([f for c in INVISIBLE for f in _coded_forms(c)]) + ")*"


_TEXT_GAP = _gap("[" + INVISIBLE + "]")
_BYTES_GAP = _gap("|".join(INVISIBLE))  # a class of multi-byte characters means nothing over bytes


def _pattern_text(address: str, gap: str) -> str:
    return gap.join(_char_forms(c) for c in address.strip().lower())


@lru_cache(maxsize=256)
def address_pattern(address: str) -> re.Pattern[str]:
    """A pattern matching `address` in any mix of plain, URL-encoded and entity-encoded characters,
    in any case, with invisible characters between them.

    No word boundaries on purpose: inside `xmax@example.dev` the reviewer's `max@example.de` is
    still replaced. Over-redacting a stranger's look-alike address costs little; a miss leaks.
    """
    return re.compile(_pattern_text(address, _TEXT_GAP))


def replace_address(text: str, address: str, replacement: str) -> str:
    return address_pattern(address).sub(replacement, text)


def contains_address(text: str, address: str) -> bool:
    """One search over the whole text, however long: the pattern's every first alternative is a
    literal character, so the engine skips to the candidates itself (faster than looking for an
    "@" first and searching around each)."""
    return address_pattern(address).search(text) is not None


# (codec, what "@" looks like in it): UTF-16 and UTF-32 in both byte orders. The "@" of UTF-32 contains
# that of UTF-16 in the same byte order, so one look for it decides whether either can be there.
_WIDE = (("utf-16-le", b"@\x00"), ("utf-32-le", b"@\x00"), ("utf-16-be", b"\x00@"), ("utf-32-be", b"\x00@"))


@lru_cache(maxsize=256)
def _byte_patterns(address: str) -> tuple[re.Pattern[bytes], tuple[tuple[bytes, re.Pattern[bytes]], ...]]:
    """The same forms over raw bytes (ASCII-compatible: the text pattern as UTF-8), and the plain
    address in UTF-16 and UTF-32 of both byte orders, so attachments and text parts can be searched
    without decoding them into strings first."""
    plain = re.compile(_pattern_text(address, _BYTES_GAP).encode("utf-8"))
    wide = []
    for codec, at in _WIDE:
        gap = b"(?:" + b"|".join(re.escape(c.encode(codec)) for c in INVISIBLE) + b")*"
        units = [b"(?:" + b"|".join(re.escape(o.encode(codec)) for o in dict.fromkeys((c, c.upper()))) + b")"
                 for c in address.strip().lower()]
        wide.append((at, re.compile(gap.join(units))))
    return plain, tuple(wide)


def contains_address_bytes(data: bytes, address: str) -> bool:
    plain, wide = _byte_patterns(address)
    return plain.search(data) is not None or any(
        pattern.search(data) for at, pattern in wide if at in data or "@" not in address)


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
    """Replace several addresses (longest first, so one that contains another is handled whole)."""
    for address in sorted(replacements, key=len, reverse=True):
        text = replace_address(text, address, replacements[address])
    return text
