"""Quoted-reply attribution lines, where mail clients write the sender's full name without asking.

Gmail writes "On Mon, 2 Mar 2026 at 10:00, Maximilian Mueller <max@example.de> wrote:", Apple Mail
and Thunderbird "Am 02.03.2026 um 10:00 schrieb Maximilian Mueller:", Outlook a header block
("Von: Maximilian Mueller" / "Gesendet: ..." / "An: ..."). The person never typed that name; the
relay replaces it there with their public name. A name the person typed themselves (a signature,
"I am Maximilian") stays: only attribution lines are touched. Pure functions over text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from functools import lru_cache

# Words that end a "... wrote:" attribution, in the languages the platform's users write.
_WROTE = (r"(?:wrote|writes|schrieb|schreibt|a\s+écrit|a\s+ecrit|escribió|escribio|ha\s+scritto|scrive"
          r"|schreef|geschreven)")
# Words that start a two-line attribution whose "wrote" word is on the next line.
_STARTS = r"(?:On|Am|Le|El|Il|Op|Den|Em)"
# Field names of the header block Outlook and others put above a quoted message.
_FIELDS = (r"(?:From|Von|De|Da|Van|Sent|Gesendet|Envoyé|Enviado|Inviato|Verzonden|Date|Datum|To|An|À|A|Para"
           r"|Aan|Cc|Kopie|Reply-To|Antwort an|Sender|Absender|Expéditeur|Mittente|Remitente|Afzender)")

_QUOTE_PREFIX = re.compile(r"^[\s>|*]*")
_WROTE_LINE = re.compile(_WROTE + r"\b[^\n]{0,120}:?\s*\**\s*$", re.IGNORECASE)
_START_LINE = re.compile(r"^" + _STARTS + r"\b", re.IGNORECASE)
_FIELD_LINE = re.compile(r"^" + _FIELDS + r"\s*:", re.IGNORECASE)
_ORIGINAL = re.compile(r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|"
                       r"mensaje original|messaggio originale|oorspronkelijk bericht)", re.IGNORECASE)
_SPLIT_HTML = re.compile(r"(<br\s*/?>|</?(?:div|p|tr|td|blockquote|li|table|h\d)\b[^>]*>)", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def name_variants(names: Iterable[str]) -> list[str]:
    """A display name as clients write it: "Maximilian Mueller", "Mueller, Maximilian" and so on."""
    out: list[str] = []
    for name in names:
        clean = " ".join(name.replace('"', " ").split())
        if len(clean) < 3 or "@" in clean:
            continue
        words = clean.replace(",", " ").split()
        forms = {clean}
        if "," in clean and len(words) >= 2:
            forms.add(" ".join(words[1:] + words[:1]))
        elif len(words) >= 2:
            forms.add(f"{words[-1]}, {' '.join(words[:-1])}")
            forms.add(f"{words[-1]} {' '.join(words[:-1])}")
        out.extend(forms)
    return sorted(set(out), key=len, reverse=True)


@lru_cache(maxsize=256)
def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = []
    for name in names:
        # spaces may be any run of whitespace (wrapped lines) or &nbsp; in HTML
        parts = [re.escape(word) for word in name.split()]
        alternatives.append(r"(?:\s|&nbsp;|&#160;)+".join(parts))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def is_attribution(text: str, following: str = "") -> bool:
    """Whether a line (quote markers allowed) attributes a quoted message to someone."""
    line = _QUOTE_PREFIX.sub("", text).strip()
    if not line:
        return False
    if _FIELD_LINE.match(line) or _ORIGINAL.match(line) or _WROTE_LINE.search(line):
        return True
    nxt = _QUOTE_PREFIX.sub("", following).strip()
    return bool(_START_LINE.match(line) and nxt and _WROTE_LINE.search(nxt))


def replace_in_plain(text: str, names: Iterable[str], public_name: str) -> str:
    """Replace the names in the attribution lines of a plain-text body."""
    pattern = _name_pattern(tuple(name_variants(names)))
    if pattern is None:
        return text
    lines: list[str | None] = list(text.split("\n"))
    i = 0
    while i < len(lines):
        line = lines[i] or ""
        following = lines[i + 1] or "" if i + 1 < len(lines) else ""
        if not is_attribution(line, following):
            i += 1
            continue
        bare = _QUOTE_PREFIX.sub("", line).strip()
        if _FIELD_LINE.match(bare) or _WROTE_LINE.search(line) or i + 1 >= len(lines):
            lines[i] = pattern.sub(public_name, line)
            i += 1
            continue
        # "On ... Maximilian\n> Mueller <...> wrote:": the name may be wrapped across both lines
        lines[i] = pattern.sub(public_name, line + "\n" + following)
        lines[i + 1] = None
        i += 2
    return "\n".join(line for line in lines if line is not None)


def replace_in_html(source: str, names: Iterable[str], public_name: str) -> str:
    """The same for HTML: segments between line-breaking tags are the lines; the text of a segment
    (tags removed, entities decoded) decides, the replacement happens in its source."""
    pattern = _name_pattern(tuple(name_variants(names)))
    if pattern is None:
        return source
    pieces = _SPLIT_HTML.split(source)
    texts = [html.unescape(_TAG.sub("", piece)) for piece in pieces]
    safe_name = html.escape(public_name)
    for i, piece in enumerate(pieces):
        if i % 2 == 1 or not texts[i].strip():
            continue  # a separator tag, or empty
        following = next((t for t in texts[i + 1:] if t.strip()), "")
        previous = next((t for t in reversed(texts[:i]) if t.strip()), "")
        if is_attribution(texts[i], following) or (_START_LINE.match(previous.strip())
                                                   and _WROTE_LINE.search(texts[i])):
            pieces[i] = pattern.sub(safe_name, piece)
    return "".join(pieces)
