"""The reviewer can decline, against a real `relay serve` (SMTP, the outbox worker and the scheduler
on a manual clock, the HTTP API on a loopback port), on SQLite and PostgreSQL: the link comes out of
the delivered contact request (and reminder); GET shows a page and changes nothing; POST declines
once, tells the business once, and both relay addresses refuse mail afterwards; a second confirm,
an answered, expired or closed case and an unknown or forged token each get their page; the
token is never logged. And the reviewer opens the conversation: the business's address refuses
mail until the reviewer has answered (in time or late)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from relay.core import credentials, decline_tokens
from relay.core.clock import ManualClock
from relay.lifecycle.opening import Opened
from relay.store import api_keys
from relay.store.models import Case, Notice
from tests.helpers.environment import Sink, new_case
from tests.helpers.links import decline_link
from tests.helpers.smtp import smtp_send
from tests.helpers.webhooks import Receiver

REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"
START = datetime(2026, 11, 2, 9, 0)
WORDS = {"de": "Ich möchte nicht antworten", "en": "I do not want to answer"}
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


class World:
    """A running relay on a manual clock, a key for its API, and the sink that gets its mail."""

    def __init__(self, db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
        self.clock = ManualClock(START)
        self.sink = sink
        self.app = app_factory(db_url, self.clock, outbound={"url": sink.url}, cases={"reply_notice_after": "0s"})
        key = credentials.new_api_key()
        api_keys.create("platform-test", credentials.digest(key), START)
        self.relay = relay_factory(self.app)
        self.base = self.app.settings.api.public_url
        self.api = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def open(self, review_id: str, locale: str = "de", reviewer: str = REVIEWER) -> tuple[Opened, str]:
        """A case, and the decline link from the contact request as the reviewer received it."""
        opened = new_case(self.app, reviewer=reviewer, review_id=review_id, locale=locale)
        request = next(m for m in self.sink.wait(reviewer, count=1) if review_id.encode() in m["raw"])
        return opened, decline_link(request["raw"], WORDS[locale])

    def case(self, case_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.api.get(f"/v1/cases/{case_id}").json()
        return found

    def events(self, case_id: int) -> list[str]:
        return [e["name"] for e in self.api.get(f"/v1/cases/{case_id}/events").json()]

    def write(self, sender: str, to: str, text: str) -> tuple[int, str]:
        return smtp_send(self.relay.port, sender, to, f"From: <{sender}>\r\nSubject: Re\r\n\r\n{text}\r\n".encode())

    def until(self, check: Any, what: str, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < end, what
            time.sleep(0.1)


def page_of(response: httpx.Response, status: int, locale: str) -> str:
    """The page's HTML, after the checks every decline page must pass."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["cache-control"] == "no-store"
    assert response.text.startswith("<!DOCTYPE html>") and f'<html lang="{locale}">' in response.text
    assert "<script" not in response.text
    return response.text


def business_notices(sink: Sink) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m["raw"], policy=email.policy.default) for m in sink.to(BUSINESS, "notice")]


def test_get_shows_the_page_and_changes_nothing(db_url: str, app_factory: Any, relay_factory: Any,
                                                sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened, link = world.open("R-look")
    assert link.startswith(f"{world.base}/decline/")
    # the token is the case's random decline value and its signature: nothing of the case in it
    value = Case.get_by_id(opened.case_id).decline_value
    assert link.rsplit("/", 1)[1] == decline_tokens.token(value, world.app.key)
    assert value not in (opened.reviewer_address.split("@")[0], opened.business_address.split("@")[0])
    for _ in range(3):  # a link scanner, the mail gateway, then the reviewer
        html = page_of(httpx.get(link), 200, "de")
        assert "Beispiel Shop GmbH" in html and "ReviewHub" in html
        assert '<form method="post"' in html and "Ich möchte nicht antworten</button>" in html
    assert httpx.head(link).status_code == 405  # nor does HEAD
    assert world.case(opened.case_id)["state"] == "awaiting_reply"
    assert "case.declined" not in world.events(opened.case_id)
    assert Case.get_by_id(opened.case_id).declined_at is None and Notice.select().where(
        Notice.kind == "declined_notice").count() == 0


def test_post_declines_once_and_the_business_is_told_once(db_url: str, app_factory: Any, relay_factory: Any,
                                                          sink: Sink, tmp_path: Path) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened, link = world.open("R-decline", locale="en")
    world.clock.advance(timedelta(hours=3))
    done = page_of(httpx.post(link, data={}), 200, "en")
    assert "Done: you will not answer" in done and "Beispiel Shop GmbH" in done
    case = world.case(opened.case_id)
    assert case["state"] == "declined" and case["declined_at"] == "2026-11-02T12:00:00Z"
    assert world.events(opened.case_id).count("case.declined") == 1

    world.until(lambda: len(business_notices(sink)) == 1, "the declined notice")
    [notice] = business_notices(sink)
    assert str(notice["Subject"]) == "The reviewer will not answer your request about review R-decline"
    text = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "they do not want to answer" in text and "report the review" in text
    assert REVIEWER not in notice.as_string() and "Max" not in text

    # a second confirm, and two at once: the same answer, nothing more happens
    again = page_of(httpx.post(link), 200, "en")
    assert "You have already declined" in again and "On November 2, 2026" in again

    async def race() -> list[int]:
        async with httpx.AsyncClient() as client:
            return [r.status_code for r in await asyncio.gather(*(client.post(link) for _ in range(4)))]

    assert asyncio.run(race()) == [200] * 4
    assert "You have already declined" in page_of(httpx.get(link), 200, "en")
    time.sleep(1.5)  # a worker pass and a scheduler pass later: still one notice
    assert len(business_notices(sink)) == 1 and world.events(opened.case_id).count("case.declined") == 1
    assert world.case(opened.case_id)["notices"].keys() == {"contact_request", "declined_notice"}

    # the conversation is over, both ways
    code, text = world.write(REVIEWER, opened.reviewer_address, "Doch noch eine Antwort")
    assert (code, text[:5]) == (550, "5.1.1") and "closed" in text
    code, text = world.write(BUSINESS, opened.business_address, "Bitte antworten Sie doch")
    assert (code, text[:5]) == (550, "5.7.1") and "has not answered" in text

    log = (tmp_path / "relay.log").read_text()
    assert '"event": "case.declined"' in log and "POST /decline/{token} 200" in log
    token = link.rsplit("/", 1)[1]
    assert token not in log and token.split("-")[0] not in log and token.split("-")[1] not in log


def test_the_reminder_carries_the_same_link(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened, link = world.open("R-remind")
    world.clock.advance(timedelta(days=4, hours=1))  # within reminder_before of the deadline
    world.until(lambda: len(sink.to(REVIEWER, "notice")) == 2, "the reminder")
    reminder = sink.to(REVIEWER, "notice")[1]["raw"]
    assert decline_link(reminder, WORDS["de"]) == link
    assert page_of(httpx.post(link), 200, "de").count("Erledigt") >= 1
    assert world.case(opened.case_id)["state"] == "declined"


def test_answered_expired_and_closed_cases_get_a_gone_page(db_url: str, app_factory: Any, relay_factory: Any,
                                                          sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    answered, answered_link = world.open("R-answered", reviewer="erika@example.org")
    closed, closed_link = world.open("R-closed", locale="en", reviewer="jonas@example.net")
    expired, expired_link = world.open("R-expired")

    assert world.write("erika@example.org", answered.reviewer_address, "Bestellnummer BE-1")[0] == 250
    assert world.api.post(f"/v1/cases/{closed.case_id}/close", json={}).status_code == 200
    for link, locale, words in ((answered_link, "de", "bereits geantwortet"),
                                (closed_link, "en", "This conversation is closed")):
        assert words in page_of(httpx.get(link), 410, locale)
        assert words in page_of(httpx.post(link), 410, locale)
    assert world.case(answered.case_id)["state"] == "replied" and world.case(closed.case_id)["state"] == "closed"
    assert world.case(expired.case_id)["state"] == "awaiting_reply"

    world.clock.advance(timedelta(days=5))  # the deadline: gone at once, before the expiry job runs
    assert "Zeit für eine Antwort ist abgelaufen" in page_of(httpx.post(expired_link), 410, "de")
    world.until(lambda: world.case(expired.case_id)["state"] == "expired", "the expiry")
    assert "abgelaufen" in page_of(httpx.get(expired_link), 410, "de")
    assert all("case.declined" not in world.events(c.case_id) for c in (answered, closed, expired))
    assert Notice.select().where(Notice.kind == "declined_notice").count() == 0


def test_unknown_and_forged_tokens_are_404(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened, link = world.open("R-forged")
    value, signature = link.rsplit("/", 1)[1].split("-")
    other_key = decline_tokens.token(value, b"another relay's key")
    unknown = decline_tokens.token(decline_tokens.new_value(), world.app.key)  # signed, but no case has it
    for token in (f"{value}-{signature[::-1]}", f"{signature}-{value}", value, other_key, unknown,
                  "x" * 300, "%00", "..%2f..%2fetc", "", f"{value}-{signature}/", f"{value}/{signature}"):
        for method in ("GET", "POST"):
            response = httpx.request(method, f"{world.base}/decline/{token}")
            html = page_of(response, 404, "de")
            assert "Dieser Link funktioniert nicht" in html and "Beispiel Shop" not in html
    english = httpx.get(f"{world.base}/decline/{unknown}", headers={"Accept-Language": "en-GB,en;q=0.9,de;q=0.5"})
    assert "This link does not work" in page_of(english, 404, "en")
    assert world.case(opened.case_id)["state"] == "awaiting_reply"


def test_the_reviewer_opens_the_conversation(db_url: str, app_factory: Any, relay_factory: Any,
                                             sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    waiting, _ = world.open("R-first")
    late, _ = world.open("R-late", reviewer="erika@example.org")

    code, text = world.write(BUSINESS, waiting.business_address, "Haben Sie unsere Frage gesehen?")
    assert (code, text[:5]) == (550, "5.7.1") and "The reviewer has not answered" in text
    assert world.write(REVIEWER, waiting.reviewer_address, "Bestellnummer BE-2")[0] == 250
    assert world.write(BUSINESS, waiting.business_address, "Danke, gefunden.")[0] == 250
    world.until(lambda: len(sink.to(REVIEWER, "forward")) == 1, "the business's answer")

    world.clock.advance(timedelta(days=5, hours=1))  # expired without an answer: still the reviewer's turn
    world.until(lambda: world.case(late.case_id)["state"] == "expired", "the expiry")
    assert world.write(BUSINESS, late.business_address, "Schade.")[:1] == (550,)
    assert world.write("erika@example.org", late.reviewer_address, "Entschuldigung, zu spät: BE-3")[0] == 250
    assert world.write(BUSINESS, late.business_address, "Danke trotzdem.")[0] == 250  # a late answer opens it too
    counts = world.api.get(f"/v1/cases/{late.case_id}").json()["messages"]
    assert counts == {"from_reviewer": 1, "from_business": 1}


def test_a_decline_reaches_the_platform_as_a_signed_webhook(db_url: str, app_factory: Any, relay_factory: Any,
                                                           sink: Sink) -> None:
    receiver = Receiver()
    try:
        app = app_factory(db_url, outbound={"url": sink.url}, webhooks=receiver.settings())
        relay_factory(app)
        opened = new_case(app, review_id="R-hook")
        request = sink.wait(REVIEWER, count=1)[0]
        link = decline_link(request["raw"], WORDS["de"])
        assert httpx.post(link).status_code == 200
        deadline = time.monotonic() + 20
        while not any(r.type == "case.declined" for r in receiver.all()):
            assert time.monotonic() < deadline, [r.type for r in receiver.all()]
            time.sleep(0.1)
        [declined] = [r for r in receiver.all() if r.type == "case.declined"]
        assert declined.verified and declined.data["case"] == opened.case_id and declined.data["state"] == "declined"
        assert REVIEWER not in json.dumps(declined.data)
    finally:
        receiver.stop()
