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


def _char_forms(char: str) -> str:
    code = ord(char)
    forms = [re.escape(char)]
    if char.isalpha():
        forms = [f"[{re.escape(char.lower())}{re.escape(char.upper())}]"]
    forms.append(f"%{code:02x}")  # compiled case-insensitively: %2e and %2E
    forms.append(f"&#0*{code};")
    forms.append(f"&#x0*{code:x};")
    forms.extend(re.escape(name) for name in _NAMED.get(char, ()))
    return "(?:" + "|".join(forms) + ")"


@lru_cache(maxsize=256)
def address_pattern(address: str) -> re.Pattern[str]:
    """A pattern matching `address` in any mix of plain, URL-encoded and entity-encoded characters.

    No word boundaries on purpose: inside `xmax@example.dev` the reviewer's `max@example.de` is
    still replaced. Over-redacting a stranger's look-alike address costs little; a miss leaks.
    """
    body = "".join(_char_forms(c) for c in address.strip().lower())
    return re.compile(body, re.IGNORECASE)


def replace_address(text: str, address: str, replacement: str) -> str:
    return address_pattern(address).sub(replacement, text)


# Every form of an address has one of these where its "@" is; scanning only around them keeps the
# check fast on large decoded attachments.
_AT = re.compile(r"@|%40|&#0*64;|&#x0*40;|&commat;", re.IGNORECASE)
_MAX_FORM = 12  # the longest form of one character: "&#x0000040;" and the like


def contains_address(text: str, address: str) -> bool:
    pattern = address_pattern(address)
    if len(text) < 4096:
        return pattern.search(text) is not None
    reach = _MAX_FORM * len(address)
    for at in _AT.finditer(text):
        window = text[max(0, at.start() - reach): at.end() + reach]
        if pattern.search(window):
            return True
    return False


@lru_cache(maxsize=256)
def _byte_patterns(address: str) -> tuple[re.Pattern[bytes], ...]:
    """The same forms over raw bytes (ASCII-compatible and UTF-16 in both byte orders), so large
    attachments can be searched without decoding them into strings first."""
    plain = re.compile(address_pattern(address).pattern.encode("utf-8"), re.IGNORECASE)
    wide = []
    for little_endian in (True, False):
        units = []
        for char in address.strip().lower():
            options = {char, char.upper()}
            encoded = [re.escape(o.encode("utf-16-le" if little_endian else "utf-16-be")) for o in options]
            units.append(b"(?:" + b"|".join(encoded) + b")")
        wide.append(re.compile(b"".join(units)))
    return (plain, *wide)


def contains_address_bytes(data: bytes, address: str) -> bool:
    return any(pattern.search(data) for pattern in _byte_patterns(address))


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
