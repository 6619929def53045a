"""The decline pages and the mails that lead to them, rendered from the real templates (pure): every
page in both languages is well-formed HTML5 with its language, a viewport, headings and a labelled
form, and holds no script and nothing remote; the contact request and the reminder carry the link
in both parts; the business's declined notice renders in both languages."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from relay.core import notices, pages
from relay.core.cases import LOCALES

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
VOID = {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "area", "base", "col", "embed", "track"}
CONTEXT = {"platform_name": "ReviewHub", "business_name": "Beispiel <Shop> & Co", "opened_on": "2. November 2026",
           "deadline": "7. November 2026 um 10:00:00 MEZ", "declined_at": "3. November 2026 um 11:00:00 MEZ",
           "just_now": True}
PAGES = [("decline", {}), ("decline_done", {"just_now": True}), ("decline_done", {"just_now": False}),
         *(("decline_gone", {"reason": r}) for r in ("answered", "expired", "closed", "unknown"))]


class Outline(HTMLParser):
    """A strict reader: tags must nest and close; it collects what the checks look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.doctype = ""
        self.text: dict[str, str] = {}

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] in ("h1", "h2", "button", "title"):
            self.text[self.open[-1]] = self.text.get(self.open[-1], "") + data


def outline(html: str) -> Outline:
    reader = Outline()
    reader.feed(html)
    reader.close()
    return reader


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("name", "extra"), PAGES)
def test_every_page_is_plain_accessible_html(locale: str, name: str, extra: dict[str, object]) -> None:
    html = pages.render(TEMPLATES, locale, name, {**CONTEXT, "reason": "open", **extra})
    page = outline(html)
    assert page.doctype == "DOCTYPE html" and not page.problems and not page.open, page.problems
    tags = [tag for tag, _ in page.tags]
    assert dict(page.tags)["html"] == {"lang": locale}
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags
    assert ("meta", {"charset": "utf-8"}) in page.tags
    assert tags.count("h1") == 1 and tags.count("main") == 1 and page.text["title"].strip()
    assert not {"script", "iframe", "img", "link", "object", "embed"} & set(tags)
    assert "http" not in html and "<Shop>" not in html  # nothing remote; names escaped
    assert ("&lt;Shop&gt;" in html) == (extra.get("reason") != "unknown")  # no case, no business to name
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)  # no inline handlers
    if name == "decline":
        form = next(attrs for tag, attrs in page.tags if tag == "form")
        assert form == {"method": "post", "aria-labelledby": "confirm"}  # posts to its own URL
        assert ("h2", {"id": "confirm"}) in page.tags
        assert ("button", {"type": "submit"}) in page.tags and page.text["button"].strip()
    else:
        assert "form" not in tags and "button" not in tags


def test_page_texts_say_what_declining_means() -> None:
    german = pages.render(TEMPLATES, "de", "decline", {**CONTEXT, "reason": "open"})
    english = pages.render(TEMPLATES, "en", "decline", {**CONTEXT, "reason": "open"})
    assert "Ich möchte nicht antworten" in german and "I do not want to answer" in english
    for text, words in ((german, ("Gespräch wird beendet", "erfährt, dass Sie nicht antworten", "melden")),
                        (english, ("conversation ends", "told that you do not want to answer", "report"))):
        assert all(w in text for w in words), words
    assert "ReviewHub" in german and "Beispiel &lt;Shop&gt; &amp; Co" in german


def test_the_browser_s_language_picks_the_page_of_an_unknown_link() -> None:
    assert pages.preferred_locale("de-AT,de;q=0.9,en;q=0.8") == "de"
    assert pages.preferred_locale("en-GB, de;q=0.5") == "en"
    assert pages.preferred_locale("fr-FR, en;q=0.3, de;q=0.2") == "en"
    assert pages.preferred_locale("de;q=0, en") == "en"
    assert pages.preferred_locale("fr, it") == "de" and pages.preferred_locale("") == "de"
    assert pages.preferred_locale("en;q=abc, de") == "de"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_reviewer_s_mails_carry_the_decline_link_in_both_parts(locale: str) -> None:
    link = "https://relay.example/decline/" + "a" * 32 + "-" + "b" * 24
    context = {**CONTEXT, "reviewer_name": "Max M.", "review_id": "R-1", "message": "Bitte.",
               "requests": ["order_number"], "replied_at": "", "decline_url": link}
    words = {"de": "Ich möchte nicht antworten", "en": "I do not want to answer"}[locale]
    for kind in ("contact_request", "reminder"):
        rendered = notices.render(TEMPLATES, kind, locale, context)
        assert f"{words}: {link}" in rendered.text, kind
        assert f'<a href="{link}">{words}</a>' in rendered.html, kind
        without = notices.render(TEMPLATES, kind, locale, {**context, "decline_url": None})
        assert "decline" not in without.text + without.html  # a case from before the links: no dead link


@pytest.mark.parametrize("locale", LOCALES)
def test_the_business_s_declined_notice(locale: str) -> None:
    context = {**CONTEXT, "reviewer_name": "Max M.", "review_id": "R-1", "message": "Bitte.",
               "requests": [], "replied_at": "", "decline_url": None}
    rendered = notices.render(TEMPLATES, "declined_notice", locale, context)
    assert "R-1" in rendered.subject and CONTEXT["declined_at"] in rendered.text
    assert {"de": "nicht antworten möchte", "en": "do not want to answer"}[locale] in rendered.text
    assert {"de": "melden", "en": "report the review"}[locale] in rendered.html
    assert "Max" not in rendered.text + rendered.html  # nothing about the reviewer
    assert outline(rendered.html).problems == []
