"""The case lifecycle with a moved clock (no sleeping), on SQLite and PostgreSQL, over real SMTP:
request, answer, reply notice, expiry after exactly the window, late answers, reminders, closing,
quiet conversations and the retention purge."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import timedelta
from typing import Any

import pytest

from relay.app import App
from relay.core.clock import ManualClock
from relay.lifecycle import scheduler as jobs
from relay.outbound.transports import SmtpTransport
from relay.outbound.worker import Worker
from relay.store import case_records as case_store
from relay.store.models import Delivery, DeliveryBody, Message
from tests.helpers.environment import Sink, new_case
from tests.helpers.smtp import smtp_send
from tests.helpers.views import assert_no_leak

REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"
SUBJECTS = {
    "de": {"reply_notice": "Antwort auf Ihre Anfrage zu Bewertung", "expiry_notice": "Keine Antwort auf Ihre Anfrage",
           "reminder": "Erinnerung:", "late": "nach Ablauf der Antwortfrist", "report": "keine echte Kauf- oder Serviceerfahrung"},
    "en": {"reply_notice": "The reviewer answered your request", "expiry_notice": "No answer to your request",
           "reminder": "Reminder:", "late": "after the time to answer had ended", "report": "no genuine buying or service experience"},
}


class World:
    """A relay on a manual clock: inbound SMTP in a thread; the outbox and the jobs run when the
    test says, so moving the clock never races a delivery."""

    def __init__(self, db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, **cases: str) -> None:
        self.clock = ManualClock()
        self.sink = sink
        self.app: App = app_factory(db_url, self.clock, outbound={"url": sink.url}, scheduler={"interval": "1h"},
                                    cases={"reminder_before": "0s", **cases})
        self.relay = relay_factory(self.app, background=False)
        self.worker = Worker(self.app, SmtpTransport(sink.url, timeout=10, helo="relay.test"))

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    def run_jobs(self) -> dict[str, dict[str, int]]:
        return asyncio.run(jobs.run_once(self.app, self.worker))

    def reviewer_says(self, address: str, text: str) -> tuple[int, str]:
        return smtp_send(self.relay.port, REVIEWER, address,
                         f"From: Max <{REVIEWER}>\r\nSubject: Re: Anfrage\r\n\r\n{text}\r\n".encode())

    def notices(self, rcpt: str, kind: str, locale: str) -> list[email.message.EmailMessage]:
        found = [email.message_from_bytes(m["raw"], policy=email.policy.default) for m in self.sink.to(rcpt, "notice")]
        return [m for m in found if str(m["Subject"]).startswith(SUBJECTS[locale][kind])]


@pytest.mark.parametrize("locale", ["de", "en"])
def test_answer_in_time_gives_one_reply_notice(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                               locale: str) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened = new_case(world.app, locale=locale, review_id=f"R-{locale}-1")
    assert world.run_jobs()["outbox"]["sent"] == 1
    assert len(sink.to(REVIEWER)) == 1  # the contact request
    world.advance(timedelta(days=2))
    assert world.reviewer_says(opened.reviewer_address, "Bestellnummer BE-1")[0] == 250
    world.run_jobs()
    assert len(sink.to(BUSINESS, "forward")) == 1
    assert world.notices(BUSINESS, "reply_notice", locale) == []  # it follows the delivered forward
    world.advance(timedelta(hours=2))
    counts = world.run_jobs()
    assert counts["cases"]["reply_notices"] == 1 and counts["outbox"]["sent"] == 1
    notice = world.notices(BUSINESS, "reply_notice", locale)
    assert len(notice) == 1
    assert notice[0]["From"].addresses[0].addr_spec == "notices@relay.test"
    assert notice[0]["Auto-Submitted"] == "auto-generated"
    assert f"R-{locale}-1" in notice[0].get_body(("plain",)).get_content()
    assert_no_leak(bytes(notice[0]), REVIEWER)
    world.advance(timedelta(days=10))  # far past the deadline: a replied case never expires
    again = world.run_jobs()
    assert again["cases"]["expired"] == 0 and again["cases"]["reply_notices"] == 0
    assert world.notices(BUSINESS, "expiry_notice", locale) == []
    events = [e.name for e in case_store.case_detail(opened.case_id).events]
    assert events.count("case.replied") == 1 and events.count("notice.sent") == 2  # request and reply notice


@pytest.mark.parametrize("locale", ["de", "en"])
def test_no_answer_expires_after_exactly_the_window(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                                    locale: str) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened = new_case(world.app, locale=locale, review_id=f"R-{locale}-2")
    world.run_jobs()
    world.advance(timedelta(days=5) - timedelta(seconds=1))
    assert world.run_jobs()["cases"]["expired"] == 0
    world.advance(timedelta(seconds=1))
    counts = world.run_jobs()
    assert counts["cases"]["expired"] == 1 and counts["outbox"]["sent"] == 1
    assert world.run_jobs()["cases"] == {"expired": 0, "reply_notices": 0, "reminded": 0, "closed": 0, "purged": 0}
    expiry = world.notices(BUSINESS, "expiry_notice", locale)
    assert len(expiry) == 1
    text = expiry[0].get_body(("plain",)).get_content()
    assert f"R-{locale}-2" in text and SUBJECTS[locale]["report"] in text
    assert ("5. Januar 2026" if locale == "de" else "January 5, 2026") in text  # the date of the request
    assert case_store.case_detail(opened.case_id).case.state == "expired"

    # a late answer is still forwarded, marked late, and brings no reply notice
    world.advance(timedelta(hours=3))
    assert world.reviewer_says(opened.reviewer_address, "Sorry, zu spät: BE-2")[0] == 250
    world.run_jobs()
    forward = sink.to(BUSINESS, "forward")
    assert len(forward) == 1 and SUBJECTS[locale]["late"] in forward[0]["raw"].decode().replace("=\r\n", "")
    assert Message.get(Message.case == opened.case_id).late
    world.advance(timedelta(hours=3))
    world.run_jobs()
    assert world.notices(BUSINESS, "reply_notice", locale) == []
    assert len(world.notices(BUSINESS, "expiry_notice", locale)) == 1


def test_late_answers_can_be_rejected(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink, late_replies="reject")
    opened = new_case(world.app)
    world.advance(timedelta(days=5))  # the scheduler has not run yet: the deadline alone decides
    code, text = world.reviewer_says(opened.reviewer_address, "zu spät")
    assert (code, text[:5]) == (550, "5.7.1") and "time to answer" in text
    assert sink.to(BUSINESS, "forward") == []


def test_answer_racing_the_deadline_gives_exactly_one_notice(db_url: str, app_factory: Any, relay_factory: Any,
                                                             sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    opened = new_case(world.app)
    world.advance(timedelta(days=5))  # exactly the deadline: the answer comes too late
    assert world.reviewer_says(opened.reviewer_address, "gerade noch?")[0] == 250
    world.advance(timedelta(hours=2))
    world.run_jobs()
    world.run_jobs()
    assert len(world.notices(BUSINESS, "expiry_notice", "de")) == 1
    assert world.notices(BUSINESS, "reply_notice", "de") == []
    detail = case_store.case_detail(opened.case_id)
    assert detail.case.state == "expired" and detail.messages[0].late


def test_reminder_once_when_configured(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink, reminder_before="1d")
    opened = new_case(world.app)
    world.run_jobs()
    world.advance(timedelta(days=4) - timedelta(seconds=1))
    assert world.run_jobs()["cases"]["reminded"] == 0
    world.advance(timedelta(seconds=1))
    assert world.run_jobs()["cases"]["reminded"] == 1
    world.advance(timedelta(hours=1))
    assert world.run_jobs()["cases"]["reminded"] == 0
    reminders = world.notices(REVIEWER, "reminder", "de")
    assert len(reminders) == 1
    assert reminders[0]["From"].addresses[0].addr_spec == opened.reviewer_address  # answering it works
    assert str(reminders[0]["Reply-To"]) == opened.reviewer_address
    assert BUSINESS not in bytes(reminders[0]).decode()


def test_no_reminder_when_turned_off(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink, reminder_before="0s")
    new_case(world.app)
    for hours in range(0, 24 * 6, 6):
        world.advance(timedelta(hours=6))
        assert world.run_jobs()["cases"]["reminded"] == 0, hours
    assert world.notices(REVIEWER, "reminder", "de") == []


def test_closed_and_quiet_conversations_refuse_mail_and_bodies_are_purged(
        db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    closed = new_case(world.app, review_id="R-closed")
    quiet = new_case(world.app, review_id="R-quiet")
    world.run_jobs()
    assert case_store.close_case(closed.case_id, "withdrawn by the business", world.clock.now())
    code, text = world.reviewer_says(closed.reviewer_address, "hallo?")
    assert (code, text[:5]) == (550, "5.1.1") and "closed" in text
    world.advance(timedelta(days=6))
    assert world.run_jobs()["cases"] == {"expired": 1, "reply_notices": 0, "reminded": 0, "closed": 0, "purged": 0}
    world.advance(timedelta(days=25))  # 31 days without a message
    counts = world.run_jobs()
    assert counts["cases"]["closed"] == 1
    assert case_store.case_detail(quiet.case_id).case.close_reason == "conversation lifetime over"
    code, text = world.reviewer_says(quiet.business_address, "hallo?")
    assert (code, text[:5]) == (550, "5.1.1")
    world.advance(timedelta(days=90))
    assert world.run_jobs()["cases"]["purged"] == 3  # two contact requests and the expiry notice
    kept = [(d.kind, d.created_at) for d in Delivery.select().join(DeliveryBody).where(Delivery.state == "sent")]
    assert kept == []
    assert case_store.case_detail(quiet.case_id).deliveries[0].state == "sent"  # metadata stays
    assert world.run_jobs()["cases"]["purged"] == 0
