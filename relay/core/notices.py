"""Messages the relay writes itself, rendered from jinja2 templates in `templates/<locale>/`.

Each notice kind has three templates: `<kind>.subject.txt`, `<kind>.txt` and `<kind>.html`. The
HTML one is autoescaped; undefined variables are errors (StrictUndefined), so a template that asks
for something the code does not give fails in the tests, not in a reviewer's inbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime

from relay.core.compose import WRITTEN, Addressing, new_boundary, set_headers, to_bytes
from relay.core.errors import Unavailable
from relay.core.parts import Removed


class TemplateProblem(Unavailable):
    """A notice template is missing or does not render (a deployment problem, named in the message)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=8)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env


def localized(moment: datetime, locale: str, timezone: str, with_time: bool = True) -> str:
    """A UTC moment as the reader expects it: their language's format, the relay's time zone."""
    local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
    if with_time:
        return str(format_datetime(local, format="long", locale=locale, tzinfo=ZoneInfo(timezone)))
    return str(format_date(local, format="long", locale=locale))


def render(templates: Path, kind: str, locale: str, context: dict[str, Any]) -> Rendered:
    env = _environment(str(templates))
    try:
        parts = [env.get_template(f"{locale}/{kind}.{suffix}").render(**context)
                 for suffix in ("subject.txt", "txt", "html")]
    except jinja2.TemplateNotFound as exc:
        raise TemplateProblem(f"notice template {exc.name} not found under {templates}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(f"notice template {locale}/{kind}: {exc}") from exc
    subject = " ".join(parts[0].split())
    return Rendered(subject=subject, text=parts[1], html=parts[2])


def line(templates: Path, locale: str, name: str, context: dict[str, Any]) -> str:
    """A one-line note the relay adds to a forward, from `templates/<locale>/<name>.txt`."""
    env = _environment(str(templates))
    try:
        text = env.get_template(f"{locale}/{name}.txt").render(**context)
    except (jinja2.TemplateNotFound, jinja2.UndefinedError) as exc:
        raise TemplateProblem(f"notice template {locale}/{name}.txt: {exc}") from exc
    return " ".join(text.split())


def removed_attachments(templates: Path, locale: str, removed: Sequence[Removed]) -> str:
    """The line a forward carries when attachments were removed, in the recipient's language."""
    return line(templates, locale, "removed_attachments", {"removed": list(removed)})


def build(rendered: Rendered, who: Addressing, message_id: str, date: datetime) -> bytes:
    """The notice as a text/plain + text/html alternative, marked auto-generated (RFC 3834).

    Both parts are quoted-printable, which keeps them 7-bit and readable and lets the boundary be
    chosen without scanning them (see new_boundary)."""
    msg = EmailMessage(policy=WRITTEN)
    msg["Subject"] = rendered.subject
    set_headers(msg, who, message_id, date, auto_submitted=True)
    msg.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    msg.make_alternative(boundary=new_boundary())
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return to_bytes(msg)
