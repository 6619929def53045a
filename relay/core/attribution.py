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
from html.entities import codepoint2name

# Words that end a "... wrote:" attribution, in the languages the platform's users write (German, English,
# French, Spanish, Italian, Dutch, Polish, Swedish, Danish, Norwegian, Portuguese, Czech, Turkish).
_WROTE = (r"(?<!\w)(?:wrote|writes|schrieb|schreibt|a\s+écrit|a\s+ecrit|escribió|escribio|ha\s+scritto|scrive"
          r"|schreef|geschreven|napisał\(a\)|napisała|napisał|pisze|skrev|escreveu|napsal\(a\)|napsala|napsal"
          r"|yazd\u0131)(?!\w)")  # \u0131: the Turkish dotless i
# Words that start an attribution (so one whose name or "wrote" word wrapped onto the next line), or
# a date, a weekday's abbreviation and a date ("pon., 2 mar", "po 2. 3."), or (Turkish Gmail) a name
# with its address and a comma before the date.
_STARTS = (r"(?:(?:On|Am|Le|El|Il|Op|Den|Em|No\s+dia|W\s+dniu|Dnia|Dne)(?!\w)|\d|\w{1,4}\.?,?\s+\d"
           r"|[^<>\n]{1,80}<[^<>\s]+@[^<>\s]+>,)")
# Field names of the header block Outlook and others put above a quoted message.
_FIELDS = (r"(?:From|Von|De|Da|Van|Sent|Gesendet|Envoyé|Enviado|Inviato|Verzonden|Date|Datum|To|An|À|A|Para"
           r"|Aan|Cc|Kopie|Reply-To|Antwort an|Sender|Absender|Expéditeur|Mittente|Remitente|Afzender"
           r"|Od|Wysłano|Do|Temat|DW|Data|Från|Skickat|Till|Ämne|Kopia|Fra|Sendt|Til|Emne|Dato|Assunto"
           r"|Odesláno|Komu|Předmět|Kimden|Gönderildi|Gönderilen|Kime|Konu|Tarih|Bilgi)")

_QUOTE_PREFIX = re.compile(r"^[\s>|*]*")
# the "wrote" word, then at most a name and address, then the colon that ends the line (or Zoho's
# "---- On ... wrote ----"): "Jan Kowalski pisze w sprawie recenzji." is a sentence, not an attribution
_WROTE_LINE = re.compile(_WROTE + r"[^\n]{0,120}(?::|\s-{2,})\s*\**\s*$", re.IGNORECASE)
_WROTE_WORD = re.compile(_WROTE, re.IGNORECASE)
_START_LINE = re.compile(r"^" + _STARTS, re.IGNORECASE)
_FIELD_LINE = re.compile(r"^" + _FIELDS + r"\s*:", re.IGNORECASE)
_ORIGINAL = re.compile(r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original"
                       r"|messaggio originale|oorspronkelijk bericht|wiadomość oryginalna|oryginalna wiadomość"
                       r"|ursprungligt meddelande|oprindelig meddelelse|opprinnelig melding|mensagem original"
                       r"|původní zpráva|özgün ileti|orijinal ileti)", re.IGNORECASE)
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


def _letter(char: str) -> str:
    """A letter of a name; in HTML a non-ASCII one may be written as an entity ("Nov&aacute;k", "&#322;")."""
    if char.isascii():
        return re.escape(char)
    cases = {c for c in (char, char.lower(), char.upper()) if len(c) == 1}
    forms = {re.escape(char)} | {f"&#{ord(c)};" for c in cases} | {f"&#x{ord(c):x};" for c in cases}
    forms |= {f"&{codepoint2name[ord(c)]};" for c in cases if ord(c) in codepoint2name}
    return "(?:" + "|".join(sorted(forms)) + ")"


@lru_cache(maxsize=256)
def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = []
    for name in names:
        # spaces may be any run of whitespace (wrapped lines, with their quote markers) or &nbsp; in HTML
        parts = ["".join(_letter(char) for char in word) for word in name.split()]
        alternatives.append(r"(?:\s|&nbsp;|&#160;)+(?:[>|]+\s*)*".join(parts))
    # a whole name, never part of a word, an address or a domain ("info@discourse.org")
    return re.compile(r"(?<![\w@])(?:" + "|".join(alternatives) + r")(?![\w@]|\.\w)", re.IGNORECASE)


# FairEmail and other clients write just the date and the name: "02.03.2026 10:00:00, Anna Schmidt:"
_DATED_LINE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4},?\s+\d{1,2}:\d{2}(?::\d{2})?,?\s+[^:\n]{1,120}:\s*$")
# a name written in front of an address, as "Name <address>" (quoted or not)
_NAMED_ADDRESS = r"((?:[^\W\d_][\w.'-]*,?\s+){0,3}[^\W\d_][\w.'-]*)\"?\s*<\s*{address}\s*>"


# capitalised words that stand before a name in attribution lines without being part of it
_NOT_NAMES = frozenset({"AM", "PM", "A.M", "P.M", "UTC", "GMT", "CET", "CEST", "MEZ", "MESZ", "UHR", "ON", "LE",
                        "EL", "IL", "OP", "DEN", "EM", "DNE", "VON", "FROM", "DE", "OD", "FRA", "FRÅN"})


def names_beside(text: str, addresses: Iterable[str]) -> list[str]:
    """Names written in front of the sender's own address ("Anna Schmidt <anna@example.org>" in
    "On ..., Anna Schmidt <anna@example.org> wrote:"): the address says whose name it is, even
    when the message's From header carried none. Only the capitalised words next to the address
    count (not the "schrieb" or the date before them)."""
    found: list[str] = []
    for address in addresses:
        if "<" not in text or address.split("@")[0].lower() not in text.lower():
            continue
        pattern = re.compile(_NAMED_ADDRESS.replace("{address}", re.escape(address)), re.IGNORECASE)
        for match in pattern.finditer(text):
            words = match.group(1).split()
            named: list[str] = []
            for word in reversed(words):
                if not word[0].isupper() or word.strip(".,").upper() in _NOT_NAMES:
                    break
                named.insert(0, word)
            if named and len(" ".join(named)) >= 3:
                found.append(" ".join(named))
    return list(dict.fromkeys(found))


def _bare(line: str) -> str:
    return _QUOTE_PREFIX.sub("", line).strip()


def is_attribution(text: str) -> bool:
    """Whether a line (quote markers allowed) attributes a quoted message to someone."""
    line = _bare(text)
    return bool(line) and bool(_FIELD_LINE.match(line) or _ORIGINAL.match(line) or _WROTE_LINE.search(line)
                               or _DATED_LINE.match(line))


def is_wrapped_attribution(first: str, second: str) -> bool:
    """Whether two lines are one attribution wrapped in two ("On ..., Maximilian" / "Mueller <...> wrote:",
    "Am ... schrieb" / "Maximilian Mueller <...>:"). A line that is an attribution by itself joins nothing:
    the name someone typed above one stays."""
    a, b = _bare(first), _bare(second)
    if not a or not b or is_attribution(a) or (_START_LINE.match(b) and is_attribution(b)):
        return False
    return bool((_START_LINE.match(a) or _WROTE_WORD.search(a)) and _WROTE_LINE.search(a + " " + b))


def replace_in_plain(text: str, names: Iterable[str], public_name: str) -> str:
    """Replace the names in the attribution lines of a plain-text body."""
    pattern = _name_pattern(tuple(name_variants(names)))
    if pattern is None:
        return text
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not pattern.search(lines[i] + "\n" + following):
            out.append(lines[i])  # no name here (the quick test: most lines)
            i += 1
            continue
        if is_wrapped_attribution(lines[i], following):
            # the name may be wrapped across both lines: replaced as one, the lines stay two where it was not
            out.extend(pattern.sub(public_name, lines[i] + "\n" + following).split("\n"))
            i += 2
            continue
        out.append(pattern.sub(public_name, lines[i]) if is_attribution(lines[i]) else lines[i])
        i += 1
    return "\n".join(out)


def replace_in_html(source: str, names: Iterable[str], public_name: str) -> str:
    """The same for HTML: segments between line-breaking tags are the lines; the text of a segment
    (tags removed, entities decoded) decides, the replacement happens in its source."""
    pattern = _name_pattern(tuple(name_variants(names)))
    if pattern is None:
        return source
    pieces = _SPLIT_HTML.split(source)
    texts = [html.unescape(_TAG.sub("", piece)) for piece in pieces]
    safe_name = html.escape(public_name)
    lines = [i for i in range(0, len(pieces), 2) if texts[i].strip()]  # not the separators, not empty
    for k, i in enumerate(lines):
        if not pattern.search(pieces[i]):
            continue  # no name here (the quick test: most segments)
        previous = texts[lines[k - 1]] if k else ""
        following = texts[lines[k + 1]] if k + 1 < len(lines) else ""
        if (is_attribution(texts[i]) or is_wrapped_attribution(texts[i], following)
                or is_wrapped_attribution(previous, texts[i])):
            pieces[i] = pattern.sub(safe_name, pieces[i])
    return "".join(pieces)
