"""HTML as a browser reads it (pure: text in, text out).

An address can be split in the source and still be shown whole: `max.mueller<wbr>@example.de`,
`max.mueller<span>@</span>example.de`, a comment between two characters. The source-level
patterns of relay.redact do not see those; the text a browser renders does. `replace_rendered`
finds addresses in that text (the element text from lxml's parser, invisible characters removed,
which relay.redact's patterns skip) and edits the text nodes it spans, so the elements around stay
as they were and the HTML stays well-formed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

import lxml.etree
import lxml.html

from relay.core.redact import INVISIBLE, address_pattern

_UTF8 = lxml.html.HTMLParser(encoding="utf-8")
_TAG_OR_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)|<[^>]*>", re.DOTALL)
_DOCTYPE = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?(<!doctype[^>]*>)", re.IGNORECASE)


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


def visible_text(source: str) -> str:
    """A quick approximation of the rendered text: tags and comments removed, character
    references decoded. Used to decide whether the full parse is needed, and by the final scan."""
    return html.unescape(_TAG_OR_COMMENT.sub("", source))


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


def _slots(node: lxml.etree._Element) -> Iterator[_Slot]:
    """The text runs under `node` in the order a browser shows them. A comment's own text is not
    shown, its tail is; text of style and script elements is included (over-matching costs
    nothing). The parser limits how deep elements nest, and so this recursion."""
    if isinstance(node.tag, str):
        yield _Slot(node, "text")
    for child in node:
        yield from _slots(child)
        yield _Slot(child, "tail")


def replace_rendered(source: str, replacements: dict[str, str]) -> str:
    """`source` with every address of `replacements` that shows in the rendered text replaced
    (longest first). Unchanged, byte for byte, when the rendered text holds none of them."""
    rough = visible_text(source)
    wanted = [a for a in sorted(replacements, key=len, reverse=True) if address_pattern(a).search(rough)]
    if not wanted:
        return source
    try:
        document = parse(source)
    except (lxml.etree.ParserError, ValueError):
        return source  # the final scan decides about what cannot be parsed
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
            if char not in INVISIBLE:
                shown.append(char)
                where.append((index, offset))
    matches = list(address_pattern(address).finditer("".join(shown)))
    for match in reversed(matches):
        (first, start), (last, end) = where[match.start()], where[match.end() - 1]
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
