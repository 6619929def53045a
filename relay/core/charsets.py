"""A text part's content as the characters its sender wrote (pure: a part in, a str out).

The declared charset is not always what the bytes are: Windows programs export text in UTF-16
with a byte-order mark and mail clients attach it without a `charset`, which reads as US-ASCII and
turns every character into two unreadable ones (nothing in them would be found or replaced). A
byte-order mark says what the bytes are more surely than a missing or default charset does, and
UTF-16 without one still shows itself by a zero in every other byte (which also tells the byte
order of a declared `utf-16` without a mark). Eight-bit text without a charset is read as UTF-8
when it is valid UTF-8 (what clients that leave the charset out almost always send), else as the
charset an HTML part names in its `<meta>`, else as Windows-1252: never as ASCII with every
non-ASCII letter replaced, which would lose the sender's words once the part is rewritten.
"""

from __future__ import annotations

import codecs
import re
from email.message import MIMEPart

# longest first: the UTF-32 LE mark begins with the UTF-16 LE one
_MARKS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
          (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_DEFAULTS = {None, "us-ascii", "ascii"}
_UNMARKED = {"utf-16": ("utf-16-le", "utf-16-be"), "utf-32": ("utf-32-le", "utf-32-be")}
_SAMPLE = 512
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([a-z0-9_.:-]+)", re.IGNORECASE)


def sniffed(data: bytes, declared: str | None) -> tuple[str, int] | None:
    """(codec, bytes to skip) when the bytes say what they are better than `declared` does: a
    byte-order mark, or, where no charset was declared, UTF-16 text without one."""
    for mark, codec in _MARKS:
        if data.startswith(mark):
            return codec, len(mark)
    if (declared in _DEFAULTS or declared in _UNMARKED) and len(data) >= 4:
        sample = data[:_SAMPLE]
        even, odd = sample[0::2], sample[1::2]
        little, big = _UNMARKED.get(declared or "", _UNMARKED["utf-16"])
        if odd.count(0) > len(odd) * 0.6 and even.count(0) < len(even) * 0.1:
            return little, 0
        if even.count(0) > len(even) * 0.6 and odd.count(0) < len(odd) * 0.1:
            return big, 0
        if declared in _UNMARKED:
            return big, 0  # RFC 2781: without a mark, big-endian
    return None


def undeclared(data: bytes, html: bool) -> str | None:
    """The charset of 8-bit text that declares none (None for ASCII, which reads as itself)."""
    if data.isascii():
        return None
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if html:
        named = _META_CHARSET.search(data[:4096])
        if named:
            return named.group(1).decode("ascii").lower()
    return "windows-1252"


def decoded_text(part: MIMEPart) -> str:
    """A text part's content as str, decoded once: by its byte-order mark (or as evident UTF-16)
    if it has one, else by its declared charset, else as `undeclared` reads it; bytes that do not
    decode are replaced, and an unknown charset falls back to UTF-8."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    declared = part.get_content_charset()
    found = sniffed(payload, declared)
    if found is not None:
        codec, skip = found
        return payload[skip:].decode(codec, errors="replace")
    if declared in _DEFAULTS:  # none, or US-ASCII: what clients write that did not look at the text
        declared = undeclared(payload, part.get_content_subtype() != "plain")
    try:
        return payload.decode(declared or "ascii", errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")
