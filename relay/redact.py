"""Finding and replacing an address in text, in the forms mail clients and HTML put it in.

A pattern is built per address in which every character may also appear URL-encoded (`%40`) or
as an HTML character reference (`&#64;`, `&#x40;`, `&commat;`), in any mix and any case, so
`mailto:max%2Emueller%40example.de` and `max&#46;mueller&#64;example.de` are found as well as the
plain form. Pure functions; the sanitiser applies them to decoded text.
"""

from __future__ import annotations

import re
from functools import lru_cache

_NAMED = {"@": ("&commat;",), ".": ("&period;",), "-": ("&hyphen;", "&dash;"), "_": ("&lowbar;",),
          "+": ("&plus;",)}


def _any_case(text: str) -> str:
    """`text` as a pattern matching it in any case, spelled out ([mM]) rather than compiled with
    IGNORECASE, which makes the regular expression engine try every position of a long text."""
    return "".join(f"[{re.escape(c.lower())}{re.escape(c.upper())}]" if c.lower() != c.upper() else re.escape(c)
                   for c in text)


def _char_forms(char: str) -> str:
    """The alternatives for one character. Each begins with a literal character (`m|M`, not `[mM]`),
    so the engine skips ahead to where the first character of an address can begin."""
    code = ord(char)
    forms = [*(re.escape(c) for c in dict.fromkeys((char.lower(), char.upper()))),
             "%" + _any_case(f"{code:02x}"), f"&#0*{code};", "&#[xX]0*" + _any_case(f"{code:x}") + ";"]
    forms.extend(_any_case(name) for name in _NAMED.get(char, ()))
    return "(?:" + "|".join(forms) + ")"


@lru_cache(maxsize=256)
def address_pattern(address: str) -> re.Pattern[str]:
    """A pattern matching `address` in any mix of plain, URL-encoded and entity-encoded characters,
    in any case.

    No word boundaries on purpose: inside `xmax@example.dev` the reviewer's `max@example.de` is
    still replaced. Over-redacting a stranger's look-alike address costs little; a miss leaks.
    """
    return re.compile("".join(_char_forms(c) for c in address.strip().lower()))


def replace_address(text: str, address: str, replacement: str) -> str:
    return address_pattern(address).sub(replacement, text)


def contains_address(text: str, address: str) -> bool:
    """One search over the whole text, however long: the pattern's every first alternative is a
    literal character, so the engine skips to the candidates itself (faster than looking for an
    "@" first and searching around each)."""
    return address_pattern(address).search(text) is not None


@lru_cache(maxsize=256)
def _byte_patterns(address: str) -> tuple[re.Pattern[bytes], ...]:
    """The same forms over raw bytes (ASCII-compatible and UTF-16 in both byte orders), so large
    attachments can be searched without decoding them into strings first."""
    plain = re.compile(address_pattern(address).pattern.encode("utf-8"))
    wide = []
    for little_endian in (True, False):
        units = []
        for char in address.strip().lower():
            options = {char, char.upper()}
            encoded = [re.escape(o.encode("utf-16-le" if little_endian else "utf-16-be")) for o in options]
            units.append(b"(?:" + b"|".join(encoded) + b")")
        wide.append(re.compile(b"".join(units)))
    return (plain, *wide)


# The "@" in UTF-16 (little and big endian): without it, no UTF-16 form of an address is there.
_WIDE_AT = ("@".encode("utf-16-le"), "@".encode("utf-16-be"))


def contains_address_bytes(data: bytes, address: str) -> bool:
    plain, *wide = _byte_patterns(address)
    return plain.search(data) is not None or any(
        pattern.search(data) for at, pattern in zip(_WIDE_AT, wide, strict=True)
        if at in data or "@" not in address)


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
