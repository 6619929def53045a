"""Colleagues of one business (the same business id) open cases from addresses of their own: each
case's forwards and notices go to the address that opened it, and its business side takes mail
from that address only. A later case of the business changes nothing for an earlier one. On SQLite
and PostgreSQL, over real SMTP, with a moved clock."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import timedelta
from typing import Any

from relay.core.clock import ManualClock
from relay.lifecycle import scheduler as jobs
from relay.outbound.transports import SmtpTransport
from relay.outbound.worker import Worker
from relay.store.models import Business, Case, Delivery
from tests.helpers import stored
from tests.helpers.environment import Sink, new_case
from tests.helpers.smtp import smtp_send

ANNA, BEN = "anna@shop.example", "ben@shop.example"  # two employees of business B-1
REVIEWERS = ("max.mueller@example.de", "erika@example.org", "jonas@example.net")
REPLY_NOTICE, EXPIRY_NOTICE = "Antwort auf Ihre Anfrage zu Bewertung", "Keine Antwort auf Ihre Anfrage"


class World:
    """A relay on a manual clock: inbound SMTP in a thread; the outbox and the jobs run when the
    test says."""

    def __init__(self, db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
        self.clock = ManualClock()
        self.sink = sink
        self.app = app_factory(db_url, self.clock, outbound={"url": sink.url}, scheduler={"interval": "1h"},
                               cases={"reminder_before": "0s"})
        self.relay = relay_factory(self.app, background=False)
        self.worker = Worker(self.app, SmtpTransport(sink.url, timeout=10, helo="relay.test"))

    def run_jobs(self) -> dict[str, dict[str, int]]:
        return asyncio.run(jobs.run_once(self.app, self.worker))

    def write(self, sender: str, to: str, text: str) -> tuple[int, str]:
        return smtp_send(self.relay.port, sender, to,
                         f"From: <{sender}>\r\nSubject: Re: Anfrage\r\n\r\n{text}\r\n".encode())

    def notices(self, rcpt: str) -> list[tuple[str, str]]:
        """(subject, text) of each notice `rcpt` got."""
        found = [email.message_from_bytes(m["raw"], policy=email.policy.default) for m in self.sink.to(rcpt, "notice")]
        return [(str(m["Subject"]), m.get_body(("plain",)).get_content()) for m in found]


REVIEW_IDS = ("R-anna-answered", "R-anna-silent", "R-ben")  # none is the start of another


def named(notices: list[tuple[str, str]], subject: str) -> list[str]:
    """The reviews the notices with that subject are about, by id."""
    return sorted(review for s, text in notices if s.startswith(subject) for review in REVIEW_IDS if review in text)


def test_answers_and_notices_go_to_the_colleague_who_asked(db_url: str, app_factory: Any, relay_factory: Any,
                                                            sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    answered = new_case(world.app, reviewer=REVIEWERS[0], business=ANNA, review_id="R-anna-answered")
    new_case(world.app, reviewer=REVIEWERS[1], business=ANNA, review_id="R-anna-silent")
    new_case(world.app, reviewer=REVIEWERS[2], business=BEN, review_id="R-ben")  # after Anna's: B-1 is Ben's now
    assert stored.business_address(Business.get(Business.external_id == "B-1")) == BEN  # the business's latest address
    assert [stored.business_email(c) for c in Case.select().order_by(Case.id)] == [ANNA, ANNA, BEN]
    assert world.run_jobs()["outbox"]["sent"] == 3  # the contact requests

    world.clock.advance(timedelta(days=1))
    assert world.write(REVIEWERS[0], answered.reviewer_address, "Bestellnummer BE-1")[0] == 250
    world.run_jobs()
    assert len(sink.to(ANNA, "forward")) == 1 and sink.to(BEN, "forward") == []
    world.clock.advance(timedelta(hours=2))
    assert world.run_jobs()["cases"]["reply_notices"] == 1
    world.clock.advance(timedelta(days=5))
    assert world.run_jobs()["cases"]["expired"] == 2

    anna, ben = world.notices(ANNA), world.notices(BEN)
    assert named(anna, REPLY_NOTICE) == ["R-anna-answered"] and named(ben, REPLY_NOTICE) == []
    assert named(anna, EXPIRY_NOTICE) == ["R-anna-silent"] and named(ben, EXPIRY_NOTICE) == ["R-ben"]


def test_only_the_colleague_who_asked_writes_into_a_case(db_url: str, app_factory: Any, relay_factory: Any,
                                                         sink: Sink) -> None:
    """The rule stays the registered address, now per case. A business whose colleagues share
    conversations opens its cases from a shared address; letting in every address of the business
    would need the relay to know who belongs to it, and a mail domain does not say (freemail)."""
    world = World(db_url, app_factory, relay_factory, sink)
    annas = new_case(world.app, reviewer=REVIEWERS[0], business=ANNA, review_id="R-anna")
    bens = new_case(world.app, reviewer=REVIEWERS[1], business=BEN, review_id="R-ben")
    # the reviewers answer first: until then no business address takes mail (the reviewer opens
    # the conversation), and the refusals below would not be about the sender
    for reviewer, opened in ((REVIEWERS[0], annas), (REVIEWERS[1], bens)):
        assert world.write(reviewer, opened.reviewer_address, "Meine Bestellnummer ist BE-1")[0] == 250
    code, text = world.write(BEN, annas.business_address, "Ben hier, in Annas Fall")
    assert (code, text[:5]) == (550, "5.7.1") and "Sender not allowed" in text
    code, text = world.write(ANNA, bens.business_address, "Anna hier, in Bens Fall")
    assert (code, text[:5]) == (550, "5.7.1") and "Sender not allowed" in text
    assert world.write(ANNA, annas.business_address, "Anna in ihrem Fall")[0] == 250
    assert world.write(BEN, bens.business_address, "Ben in seinem Fall")[0] == 250
    world.run_jobs()
    for reviewer, text in ((REVIEWERS[0], b"Anna in ihrem Fall"), (REVIEWERS[1], b"Ben in seinem Fall")):
        forwards = sink.to(reviewer, "forward")
        assert len(forwards) == 1 and text in forwards[0]["raw"]


def test_an_unreachable_reviewer_is_reported_to_the_colleague_who_asked(db_url: str, app_factory: Any,
                                                                        relay_factory: Any, sink: Sink) -> None:
    world = World(db_url, app_factory, relay_factory, sink)
    gone = new_case(world.app, reviewer="gone@example.org", business=ANNA, review_id="R-anna-gone")
    new_case(world.app, reviewer=REVIEWERS[2], business=BEN, review_id="R-ben")
    request = Delivery.get((Delivery.case == gone.case_id) & (Delivery.kind == "contact_request"))
    sink.reply = "550 5.1.1 No such mailbox"
    assert asyncio.run(world.worker.run_pass(only=request.id)).failed == 1
    sink.reply = "250 2.0.0 OK"
    world.run_jobs()
    assert len(world.notices(ANNA)) == 1 and "R-anna-gone" in world.notices(ANNA)[0][1]
    assert world.notices(BEN) == []
