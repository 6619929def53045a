"""HTML as a browser shows it (pure: text in, text out).

An address can be split in the source and still be shown whole: `max.mueller<wbr>@example.de`,
`max.mueller<span>@</span>example.de`, a comment between two characters (`<!-->` is an empty one),
a hidden element (`display:none`) inside it. The source-level patterns of relay.redact do not see
those; the text a browser shows does. That text is read from lxml's parse (the same parser that
cleans remote content): the text runs of the elements that are shown, in document order; comments,
style, script, template and head content and hidden elements are not shown. `replace_rendered`
finds addresses there and edits the text runs they span, so the elements around them stay as they
were and the HTML stays well-formed. Invisible characters are skipped by relay.redact's patterns.

The same reading serves the other markup a mail client renders: text/x-amp-html, text/watch-html,
text/enriched and text/richtext (their tags are simply elements lxml does not know).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import lxml.etree
import lxml.html

from relay.core.forms import is_invisible
from relay.core.redact import contains_address, spans

MARKUP_SUBTYPES = frozenset({"html", "x-amp-html", "watch-html", "enriched", "richtext", "xhtml+xml"})
_UTF8 = lxml.html.HTMLParser(encoding="utf-8")
_DOCTYPE = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?(<!doctype[^>]*>)", re.IGNORECASE)
_NOT_SHOWN = frozenset({"style", "script", "template", "head", "title", "noscript", "object", "iframe"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])"
                           r"|(?:max-)?(?:height|width)\s*:\s*0(?![.\d]*[1-9])|opacity\s*:\s*0(?![.\d]*[1-9])",
                           re.IGNORECASE)


def parse(source: str) -> lxml.html.HtmlElement:
    """The document lxml makes of `source`. XHTML from CRM and Java mailers starts with an XML
    declaration naming its encoding, which lxml refuses in a str: such text goes in as UTF-8 bytes
    with the parser told so (the declaration no longer matches: the text was decoded already)."""
    try:
        return lxml.html.document_fromstring(source)
    except ValueError:
        return lxml.html.document_fromstring(source.encode("utf-8", "surrogatepass"), parser=_UTF8)


def serialize(document: lxml.html.HtmlElement, source: str) -> str:
    """The document as HTML, with the doctype the source had (lxml writes none of its own)."""
    match = _DOCTYPE.match(source)
    written: str = lxml.html.tostring(document, encoding="unicode", doctype=match.group(1) if match else None)
    return written


@dataclass
class _Slot:
    """One run of text in the tree: an element's text (before its first child) or its tail."""

    node: lxml.etree._Element
    attribute: str  # "text" or "tail"

    def get(self) -> str:
        value = getattr(self.node, self.attribute)
        return value if isinstance(value, str) else ""

    def set(self, value: str) -> None:
        setattr(self.node, self.attribute, value)


def _shown(node: lxml.etree._Element) -> bool:
    if not isinstance(node.tag, str):
        return False  # a comment or processing instruction: its own text is not shown
    if node.tag.lower() in _NOT_SHOWN or node.get("hidden") is not None:
        return False
    return not _HIDDEN_STYLE.search(node.get("style") or "")


def _slots(node: lxml.etree._Element) -> Iterator[_Slot]:
    """The text runs under `node` in the order a browser shows them; a tail shows even when its
    element does not. The parser limits how deep elements nest, and so this recursion."""
    if not _shown(node):
        return
    yield _Slot(node, "text")
    for child in node:
        yield from _slots(child)
        yield _Slot(child, "tail")


def _document(source: str) -> lxml.html.HtmlElement | None:
    if not source.strip():
        return None
    try:
        return parse(source)
    except (lxml.etree.ParserError, ValueError):
        return None


def visible_text(source: str) -> str:
    """The text a browser shows of `source` (empty if lxml cannot read it at all)."""
    document = _document(source)
    return "" if document is None else "".join(slot.get() for slot in _slots(document))


def replace_rendered(source: str, replacements: dict[str, str]) -> str:
    """`source` with every address of `replacements` that shows in the rendered text replaced
    (longest first). Unchanged, byte for byte, when the rendered text holds none of them."""
    document = _document(source)
    if document is None:
        return source  # the final scan decides about what cannot be parsed
    shown = "".join(slot.get() for slot in _slots(document))
    wanted = [a for a in sorted(replacements, key=len, reverse=True) if contains_address(shown, a)]
    changed = False
    for address in wanted:
        changed |= _replace_in_slots(list(_slots(document)), address, replacements[address])
    return serialize(document, source) if changed else source


def _replace_in_slots(slots: list[_Slot], address: str, replacement: str) -> bool:
    """Replace the address where it shows across the text runs: the replacement goes where the
    match starts, the characters it spans (in whichever runs) are removed."""
    original = [slot.get() for slot in slots]
    texts = list(original)
    shown: list[str] = []
    where: list[tuple[int, int]] = []  # for each shown character: (run, offset in the run)
    for index, text in enumerate(texts):
        for offset, char in enumerate(text):
            if not is_invisible(char):
                shown.append(char)
                where.append((index, offset))
    matches = list(spans("".join(shown), address))
    for match_start, match_end in reversed(matches):
        (first, start), (last, end) = where[match_start], where[match_end - 1]
        if first == last:
            texts[first] = texts[first][:start] + replacement + texts[first][end + 1:]
            continue
        texts[first] = texts[first][:start] + replacement
        for middle in range(first + 1, last):
            texts[middle] = ""
        texts[last] = texts[last][end + 1:]
    for slot, before, after in zip(slots, original, texts, strict=True):
        if before != after:
            slot.set(after)
    return bool(matches)
