"""Blocking remote content in HTML the business sends to a reviewer.

A remote image (a tracking pixel above all) tells the sender when and where the reviewer opened the
mail. The relay parses the HTML with lxml and removes every reference that would make the reader's
client fetch something: img/src and srcset, background attributes, CSS url() and @import, link
elements, frames, media and objects. Embedded (cid:) and data: images stay. Links the reader has to
click (a/href) stay: following one is the reader's choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.etree
import lxml.html

from relay.core import markup

_REMOTE = re.compile(r"^\s*(?:https?:|ftp:|//)", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)\s*(?:https?:|ftp:|//)[^)]*\1\s*\)", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import\s+[^;]+;?", re.IGNORECASE)
_DROP_TAGS = ("link", "iframe", "frame", "frameset", "object", "embed", "applet", "script", "base")
_SOURCE_ATTRS = ("src", "srcset", "background", "poster", "data", "lowsrc", "dynsrc", "href")
_MEDIA_TAGS = {"img", "image", "input", "video", "audio", "source", "track", "picture", "table", "td",
               "th", "tr", "body", "div", "span", "p"}
BLOCKED_ALT = "[image blocked]"


class UnparseableHtml(ValueError):
    """HTML with remote references that lxml cannot parse: it cannot be made safe."""


@dataclass(frozen=True)
class Blocked:
    html: str
    removed: int


def block_remote(source: str) -> Blocked:
    """The HTML with remote references removed, and how many were removed."""
    if not source.strip():
        return Blocked(source, 0)
    try:
        document = markup.parse(source)
    except (lxml.etree.ParserError, ValueError) as exc:
        if _has_remote_text(source):
            raise UnparseableHtml("HTML with remote references could not be parsed: "
                                  f"{type(exc).__name__}") from exc
        return Blocked(source, 0)
    removed = 0
    for element in list(document.iter()):
        if not isinstance(element, lxml.html.HtmlElement) or not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag in _DROP_TAGS:
            removed += 1
            element.drop_tree()
            continue
        if tag == "meta" and (element.get("http-equiv") or "").lower() == "refresh":
            removed += 1
            element.drop_tree()
            continue
        removed += _clean_attributes(element, tag)
        if tag == "style" and element.text:
            cleaned = _CSS_IMPORT.sub("", _CSS_URL.sub("none", element.text))
            removed += cleaned != element.text
            element.text = cleaned
    if not removed:
        return Blocked(source, 0)
    return Blocked(markup.serialize(document, source), removed)


def _clean_attributes(element: lxml.html.HtmlElement, tag: str) -> int:
    removed = 0
    for name in list(element.attrib):
        value = element.attrib[name]
        lowered = name.lower()
        if lowered == "style" and _CSS_URL.search(value):
            element.attrib[name] = _CSS_URL.sub("none", value)
            removed += 1
        elif lowered in _SOURCE_ATTRS and tag in _MEDIA_TAGS and _references_remote(value):
            del element.attrib[name]
            removed += 1
            if tag in ("img", "image", "input"):
                element.set("alt", element.get("alt") or BLOCKED_ALT)
    return removed


def _references_remote(value: str) -> bool:
    return any(_REMOTE.match(candidate) for candidate in re.split(r",\s*", value))


def _has_remote_text(source: str) -> bool:
    return bool(re.search(r"(?:src|background)\s*=|url\(", source, re.IGNORECASE))
