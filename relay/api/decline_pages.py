"""The reviewer's decline pages: `GET /decline/{token}` shows what declining means and a confirm
button; only the button's `POST` declines (relay.lifecycle.declining says why).

No API key: the token in the path is the capability. Not in the OpenAPI document: these are pages
for a person, not part of the platform's API. Every answer is an HTML page in the case's language
(the browser's, where no case is behind the token) that forbids scripts, remote content, framing
and referrers, and is not cached (it shows the case's state). The token is only ever in the URL:
the request's log line names the route template (`/decline/{token}`, relay.api.middleware), and
nothing here logs the path.

Status codes: 200 for a page that asks for the confirm or says the case is declined (also a second
confirm: the reviewer's wish holds, nothing changed); 410 where the link no longer works because
the case moved on (answered, expired, closed); 404 where no case is behind the token (unknown,
forged, mistyped).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from relay.app import App
from relay.core import notices, pages
from relay.core.cases import Standing
from relay.lifecycle import declining
from relay.lifecycle.declining import DeclinePage

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_GONE = {Standing.ANSWERED, Standing.EXPIRED, Standing.CLOSED}


def router(app: App) -> APIRouter:
    decline = APIRouter(include_in_schema=False)

    @decline.get("/decline/{token}", response_class=HTMLResponse)
    async def show(token: str, request: Request) -> HTMLResponse:
        """What declining means, and the confirm button (reads only)."""
        return _answer(app, await app.blocking(declining.look, app, token), request)

    @decline.post("/decline/{token}", response_class=HTMLResponse)
    async def confirm(token: str, request: Request) -> HTMLResponse:
        """The confirm: the case is declined, if it still may be."""
        return _answer(app, await app.blocking(declining.decline, app, token), request)

    @decline.api_route("/decline/{mangled:path}", methods=["GET", "POST"], response_class=HTMLResponse)
    async def mangled(request: Request) -> HTMLResponse:
        """A link a mail client or a copy cut or joined wrongly (empty, with a slash): the person
        still gets the page that says the link does not work, not the API's JSON."""
        return _answer(app, DeclinePage(None, None, app.clock.now()), request)

    return decline


def _answer(app: App, page: DeclinePage, request: Request) -> HTMLResponse:
    relay = app.settings.relay
    context: dict[str, Any] = {"platform_name": relay.platform_name}
    facts = page.facts
    if facts is None or page.standing is None:
        locale = pages.preferred_locale(request.headers.get("accept-language", ""))
        html = pages.render(relay.templates, locale, "decline_gone", {**context, "reason": "unknown"})
        return HTMLResponse(html, status_code=404, headers=HEADERS)
    locale, zone = facts.locale, relay.timezone
    context.update({
        "business_name": facts.business_name,
        "opened_on": notices.localized(facts.opened_at, locale, zone, with_time=False),
        "deadline": notices.localized(facts.deadline, locale, zone),
        "declined_at": notices.localized(facts.declined_at or page.now, locale, zone),
        "just_now": page.just_now,
        "reason": page.standing.value,
    })
    if page.standing is Standing.OPEN:
        name, status = "decline", 200
    elif page.standing is Standing.DECLINED:
        name, status = "decline_done", 200
    else:
        assert page.standing in _GONE
        name, status = "decline_gone", 410
    return HTMLResponse(pages.render(relay.templates, locale, name, context), status_code=status, headers=HEADERS)
