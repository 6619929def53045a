"""How an address can be written so that a reader still sees it (pure: text in, text out).

A reader sees `@` in `@`, `%40`, `%2540` (a link encoded again by a wrapper), `%25%34%30` (each
digit encoded), `&#64;`, `&commat;`, `\\40` (CSS), `\\u0040` and `\\x40` (JSON, JavaScript),
Proofpoint's `-40`, `*40` and `*`, a quoted-printable `=40` left undecoded, the fullwidth and small
`@` (U+FF20, U+FE6B), and a decomposed letter (`u` and a combining diaeresis) as `ü`. Whatever
does not show is skipped: soft hyphens, zero-width and bidirectional formatting characters,
variation selectors, tag characters, and tabs and line breaks (a browser drops them from a link).

Matching works in two steps, so that no pattern has to spell all of that out for every address
(such a pattern is tens of thousands of characters; compiling it costs more than the rest of a
message's processing): `decode` turns every coded, folded or invisible character into what it
shows as, with one precompiled tokenizer, and remembers where each came from; then `pattern`, a
small ASCII pattern per address, matches it in either case, with line breaks and tabs between.
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Characters that do not show (tabs and line breaks are left to the patterns: they are everywhere)
_INVISIBLE = ("\u00ad\u034f\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164"
              "\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f")
_INVISIBLE_CHAR = re.compile(f"[{_INVISIBLE}\t\n\r]")
# fullwidth and small forms, and the dots IDNA reads as "." in a domain: folded to ASCII (NFKC)
_COMPATIBLE = "\uff01-\uff5e\ufe50-\ufe6b\u3002\uff61"
_DOTS = {"\u3002": ".", "\uff61": "."}
# punctuation Proofpoint v3 may replace by "*" (the replaced characters are listed at the link's end)
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

_HEX = r"(?:[0-9a-fA-F]|%(?:25)*(?:3[0-9]|[46][1-6]))"  # a hex digit, itself percent-encoded or not
# One character class first, so that the regular-expression engine skips from candidate to
# candidate in C instead of trying every alternative at every position; each alternative then
# looks back at the character it began with.
_TOKEN = re.compile(
    rf"[%&\\{_INVISIBLE}{_COMPATIBLE}](?:"
    rf"(?<=[{_INVISIBLE}])(?P<invisible>[{_INVISIBLE}]*)"
    rf"|(?<=[{_COMPATIBLE}])(?P<compatible>)"
    rf"|(?<=%)(?P<percent>(?:25)*{_HEX}{_HEX}(?:%(?:25)*{_HEX}{_HEX})*)"     # %40 %2540 %25%34%30 %C3%BC
    r"|(?<=&)(?P<entity>#0*[0-9]{1,7}|#[xX]0*[0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?"
    r"|(?<=\\)(?:u\{(?P<js1>[0-9a-fA-F]{1,6})\}|u(?P<js2>[0-9a-fA-F]{4})|x(?P<js3>[0-9a-fA-F]{2})"
    r"|(?P<css>[0-9a-fA-F]{1,6})(?:\r\n|[ \t\r\n\f])?))")
# what a second pass is for: a letter with combining marks (composed), and invisible or
# compatibility characters that coded ones decoded to
_MARKS = "\u0300-\u036f"
_SECOND = re.compile(rf"(?P<combined>[^\W\d_][{_MARKS}]+)|(?P<invisible>[{_INVISIBLE}]+)"
                     rf"|(?P<compatible>[{_COMPATIBLE}])")
_NEEDS_SECOND = re.compile(f"[{_MARKS}{_INVISIBLE}{_COMPATIBLE}]")


@dataclass(frozen=True)
class Decoded:
    """Text as it shows, and where each of its characters came from."""

    text: str
    source: str
    # (start in `text`, start in `source`, length in `source` of a token or None for plain text)
    segments: tuple[tuple[int, int, int | None], ...]
    inner: Decoded | None = None  # the first pass, when a second one read its result

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that `text[start:end]` was decoded from."""
        begin, finish = self._position(start, False), self._position(end - 1, True)
        return self.inner.span(begin, finish) if self.inner is not None and finish > begin else (begin, finish)

    def _position(self, index: int, after: bool) -> int:
        if not self.segments:
            return index + (1 if after else 0)
        k = bisect.bisect_right(self.segments, (index, float("inf"), 0)) - 1
        text_start, source_start, token_length = self.segments[k]
        if token_length is None:
            return source_start + (index - text_start) + (1 if after else 0)
        return source_start + (token_length if after else 0)


@lru_cache(maxsize=16)
def decode(text: str) -> Decoded:
    """`text` with coded characters decoded (percent-escapes, character references, CSS and script
    escapes), compatibility forms folded, combining marks composed and invisible characters
    dropped. Most text has none of
    these: then it comes back as it is, without a copy."""
    first = _pass(text, _TOKEN)
    if not _NEEDS_SECOND.search(first.text):
        return first
    second = _pass(first.text, _SECOND)
    return Decoded(second.text, text, second.segments, first) if second.segments else first


def _pass(text: str, tokens: re.Pattern[str]) -> Decoded:
    pieces: list[str] = []
    segments: list[tuple[int, int, int | None]] = []
    done = length = 0
    for match in tokens.finditer(text):
        value = _value(match)
        if value is None:
            continue
        if match.start() > done:
            segments.append((length, done, None))
            pieces.append(text[done:match.start()])
            length += match.start() - done
        segments.append((length, match.start(), match.end() - match.start()))
        pieces.append(value)
        length += len(value)
        done = match.end()
    if not segments:
        return Decoded(text, text, ())
    segments.append((length, done, None))
    pieces.append(text[done:])
    return Decoded("".join(pieces), text, tuple(segments))


def _value(match: re.Match[str]) -> str | None:
    """What a token shows as; None where it shows as nothing that could be part of an address."""
    kind = match.lastgroup
    if kind == "invisible":
        return ""
    if kind == "compatible":
        char = match.group(0)
        return _DOTS.get(char) or unicodedata.normalize("NFKC", char)
    if kind == "combined":
        composed = unicodedata.normalize("NFC", match.group(0))
        return composed if len(composed) == 1 else None
    if kind == "percent":
        return _percent("%" + match.group("percent"))
    if kind == "entity":
        value = html.unescape(match.group(0))
        return value if value != match.group(0) and len(value) <= 2 else None
    code = int(match.group(kind or "css"), 16)  # js1, js2, js3, css
    return chr(code) if 0 < code < 0x110000 and not 0xd800 <= code < 0xe000 else None


_ESCAPE = re.compile(r"%(?:25)*(" + _HEX + ")(" + _HEX + ")")


def _digit(coded: str) -> str:
    """A hex digit that may itself be percent-encoded ("%34" and "%2534" are "4")."""
    return coded if len(coded) == 1 else chr(int(coded[-2:], 16))


def _percent(run: str) -> str:
    """A run of percent-escapes as the characters it encodes (UTF-8, else one byte each)."""
    data = bytes(int(_digit(high) + _digit(low), 16) for high, low in _ESCAPE.findall(run))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def is_invisible(char: str) -> bool:
    return _INVISIBLE_CHAR.fullmatch(char) is not None


# --- patterns over decoded text ------------------------------------------------------------------

_GAP = "[\t\n\r]*"


def _spellings(char: str) -> list[str]:
    """A character of an address as decoded text may show it: either case; punctuation also as
    Proofpoint writes it (`-40`, `*40`, or `*` in v3) and as quoted-printable left undecoded
    (`=40`). These stay out of `decode`: `-21` in `a-21@example.org` is what it says."""
    found = list(dict.fromkeys((char.lower(), char.upper())))
    if char in _PUNCTUATION:
        code = f"{ord(char):02x}"
        found += ["*", *(lead + hex_case for lead in "-*=" for hex_case in dict.fromkeys((code, code.upper())))]
    return found


def pattern(address: str) -> str:
    """The pattern of `address` over decoded text: each character in its spellings, line breaks and
    tabs between them. ASCII letters as classes (`[mM]`): cheap to compile and to match."""
    return _GAP.join(_unit([re.escape(s) for s in _spellings(c)]) for c in address.strip().lower())


def _unit(options: list[str]) -> str:
    single = [o for o in options if len(o) == 1 and o.isascii()]
    other = [o for o in options if o not in single]
    klass = f"[{''.join(single)}]" if len(single) > 1 else "".join(single)
    return klass if not other else "(?:" + "|".join(([klass] if klass else []) + other) + ")"


def bytes_pattern(address: str) -> bytes:
    """The same over the UTF-8 of text (ASCII-compatible bytes as they are written)."""
    return pattern(address).encode("utf-8")  # a class of ASCII letters means the same over bytes


# --- bytes: decoded only around what needs decoding ------------------------------------------------

# coded characters (ASCII), and the UTF-8 of invisible characters and of fullwidth, small and
# ideographic forms (combining marks are left out: in binary data their bytes are everywhere)
_TOKEN_BYTES = re.compile(
    rb"[%&\\*=\-\xc2\xcd\xe1\xe2\xe3\xef\xf3](?:"
    rb"(?<=%)(?:25)*[%2-7a-fA-F][0-9a-fA-F]|(?<=&)(?:#|[A-Za-z]{2,31};)"
    rb"|(?<=\\)(?:[uxUX][0-9a-fA-F{]|[0-9a-fA-F]{2})|(?<=[-*=])[2-7][0-9a-fA-F]"
    rb"|(?<=\xc2)\xad|(?<=\xcd)\x8f|(?<=\xe1)(?:\x85[\x9f\xa0]|\xa0\x8e)"
    rb"|(?<=\xe2)(?:\x80[\x8b-\x8f\xaa-\xae]|\x81[\xa0-\xa4\xa6-\xa9])|(?<=\xe3)(?:\x85\xa4|\x80\x82)"
    rb"|(?<=\xef)(?:\xbb\xbf|\xbe\xa0|\xb8[\x80-\x8f]|\xbc[\x81-\xbf]|\xbd[\x80-\x9e\xa1]|\xb9[\x90-\xab])"
    rb"|(?<=\xf3)\xa0[\x80\x81][\x80-\xbf])")


def decoded_windows(data: bytes, reach: int) -> list[str]:
    """For bytes (a document, a large text), the stretches around coded or folded characters,
    decoded as text: decoding megabytes whole would copy them, and an address spans at most
    `reach` bytes either side of a token in it."""
    windows: list[tuple[int, int]] = []
    for match in _TOKEN_BYTES.finditer(data):
        start, end = max(0, match.start() - reach), match.end() + reach
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return [decode(data[start:end].decode("utf-8", "replace")).text for start, end in windows]


# the invisible characters searched for between the characters of an address in UTF-16 and UTF-32
WIDE_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
