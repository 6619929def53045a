"""The reviewer declines: what their decline link shows, and the confirm that declines.

Looking (`GET`) only reads: link scanners and mail security gateways open every link in a mail,
and none of them may decline for the reviewer. Only the confirm (the page form's `POST`) declines,
and it needs the token, which is the capability: no other secret, no cookie, nothing a page of
another site could make a browser send (ADR 17 says why one-click unsubscribe does not decline).

Declining moves the case to `declined` under the same condition an answer moves it to `replied`
(awaiting an answer, the window open), records `case.declined` and queues the business's
declined notice in the same transaction; the notice is claimed once per case like every notice,
so a second confirm, or two at once, change nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from relay.app import App
from relay.core import decline_tokens
from relay.core.cases import Standing, decline_standing
from relay.core.vocabulary import Event, Mail
from relay.outbound import notice_queue
from relay.store import declines, events, transitions
from relay.store.declines import DeclineFacts


@dataclass(frozen=True)
class DeclinePage:
    """What the page for a token says: `facts` None where no case is behind it (unknown, forged)."""

    facts: DeclineFacts | None
    standing: Standing | None
    now: datetime
    just_now: bool = False  # this request declined the case


def _find(app: App, token: str) -> DeclineFacts | None:
    value = decline_tokens.value_of(token, app.key)
    return declines.find(value) if value is not None else None  # a forged token costs no query


def _page(facts: DeclineFacts | None, now: datetime, just_now: bool = False) -> DeclinePage:
    if facts is None:
        return DeclinePage(None, None, now)
    standing = decline_standing(facts.state, facts.deadline, now, facts.reviewer_answered,
                                facts.declined_at is not None)
    return DeclinePage(facts, standing, now, just_now)


def look(app: App, token: str) -> DeclinePage:
    """The page for `GET /decline/{token}`: reads, never writes."""
    return _page(_find(app, token), app.clock.now())


def decline(app: App, token: str) -> DeclinePage:
    """The confirm (`POST /decline/{token}`): decline the case if it may be declined now, then the
    page for what the case is after it."""
    facts = _find(app, token)
    now = app.clock.now()
    page = _page(facts, now)
    if facts is None or page.standing is not Standing.OPEN:
        return page
    notice = notice_queue.prepare_notices(app, [facts.id], Mail.DECLINED_NOTICE, now)  # rendered before the write
    with events.transaction():
        won = transitions.mark_declined(facts.id, now)
        if won:
            events.record(facts.id, Event.CASE_DECLINED, now, message="the reviewer declined to answer")
            notice_queue.store_notices(app, notice, Mail.DECLINED_NOTICE, now)
    return _page(declines.find_by_id(facts.id), now, just_now=won)
