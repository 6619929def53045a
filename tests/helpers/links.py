"""Links as a reviewer's mail client sees them: taken out of a delivered message's text and HTML
parts (decoded as a client decodes them), not built by the test."""

from __future__ import annotations

import email
import email.policy
import re
from html.parser import HTMLParser

_TEXT_LINK = re.compile(r"https?://\S+/decline/\S+")


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.found.append((self._href, " ".join(self._text.split())))
            self._href = None


def decline_link(raw: bytes, words: str) -> str:
    """The decline link of a delivered contact request or reminder: the one URL after `words` in
    the text part, which must also be the HTML part's link with `words` as its text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    in_text = [m.group(0) for m in _TEXT_LINK.finditer(text)]
    assert len(in_text) == 1 and f"{words}: {in_text[0]}" in text, text
    anchors = _Anchors()
    anchors.feed(html)
    assert (in_text[0], words) in anchors.found, anchors.found
    return in_text[0]
