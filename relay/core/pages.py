"""Web pages the relay shows a person (the decline link's pages), from `templates/<locale>/<name>.html`.

Pages are autoescaped and StrictUndefined, as the notices are (relay.core.notices): a name in a
template that the code does not give fails in the tests. They share one layout, `templates/page.html`
(the language, the viewport, the inline style), so every page is the same valid, script-free HTML.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from relay.core.cases import LOCALES
from relay.core.notices import TemplateProblem


@lru_cache(maxsize=8)
def _environment(folder: str) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def render(templates: Path, locale: str, name: str, context: dict[str, Any]) -> str:
    try:
        return _environment(str(templates)).get_template(f"{locale}/{name}.html").render(locale=locale, **context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateProblem(f"page template {exc.name} not found under {templates}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(f"page template {locale}/{name}.html: {exc}") from exc


def preferred_locale(accept_language: str, default: str = LOCALES[0]) -> str:
    """The relay's locale a browser prefers (`Accept-Language`), for a page that belongs to no
    case: `de-AT, en;q=0.8` -> de. Ties keep the browser's order; nothing usable -> `default`."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        language = tag.strip().split("-")[0].lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if language in LOCALES and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else default
