"""Signed webhooks to a real HTTP endpoint on loopback (tests/helpers/webhooks.py checks every
signature with the `standardwebhooks` reference library), on SQLite and PostgreSQL, with a moved
clock: every type from a case's life (opened, request delivered, reminded, replied, forwarded both
ways and late, closed, expired, declined, a bounce, an erasure) and nothing in any body that names
or quotes anybody; failures, an endpoint down and back with stable ids; `max_age`, `relay webhooks`
and an admin's retry; a 410 that stops the endpoint until `relay webhooks enable`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from relay.app import App
from relay.core.clock import ManualClock
from relay.core.vocabulary import Event, WebhookType
from relay.core.webhooks import DELAYS
from relay.lifecycle import scheduler as jobs
from relay.lifecycle.erasure import forget
from relay.outbound.transports import SmtpTransport
from relay.outbound.webhook_worker import Counts, WebhookWorker
from relay.outbound.worker import Worker
from relay.store import case_records, events
from relay.store.models import Case, Webhook
from tests.helpers.cli import relay_cli, write_settings
from tests.helpers.environment import Sink, new_case
from tests.helpers.reports import dsn
from tests.helpers.smtp import smtp_send
from tests.helpers.webhooks import Receiver, texts

START = datetime(2026, 11, 2, 9, 0)
REVIEWER, REVIEWER_NAME = "erika.webhook@example.de", "Erika Hakenberg"
LATE_REVIEWER = "jonas.spaet@example.net"
BOUNCING = "gibt.es.nicht@example.org"
BUSINESS, BUSINESS_NAME = "service@shop.example", "Beispiel Shop GmbH"
REQUEST = "Bitte nennen Sie uns Ihre Bestellnummer."
ANSWER, REPLY, LATE_ANSWER = "Meine Bestellnummer ist BE-48213.", "Danke, gefunden: Lieferung 7741.", "Spaet: BE-1"


def deliver(app: App) -> Counts:
    """One pass of the webhook worker, on a loop of its own (the test's clock decides what is due)."""
    worker = WebhookWorker.for_app(app)
    assert worker is not None

    async def run() -> Counts:
        try:
            return await worker.run_pass()
        finally:
            await worker.close()
    return asyncio.run(run())


class World:
    """A relay on a manual clock: SMTP in a thread; the outbox, the jobs and the webhook worker run
    when the test says."""

    def __init__(self, db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, receiver: Receiver,
                 **webhooks: str) -> None:
        self.clock = ManualClock(START)
        self.app: App = app_factory(db_url, self.clock, outbound={"url": sink.url}, scheduler={"interval": "1h"},
                                    cases={"reply_notice_after": "0s"}, webhooks=receiver.settings(**webhooks))
        self.relay = relay_factory(self.app, background=False)
        self.outbox = Worker(self.app, SmtpTransport(sink.url, timeout=10, helo="relay.test"))

    def jobs(self) -> None:
        asyncio.run(jobs.run_once(self.app, self.outbox))

    def says(self, sender: str, to: str, text: str) -> None:
        code, reply = smtp_send(self.relay.port, sender, to,
                                f"From: {sender}\r\nSubject: Re: Anfrage\r\n\r\n{text}\r\n".encode())
        assert code == 250, reply


def cli_settings(tmp_path: Path, db_url: str, sink: Sink, receiver: Receiver) -> Path:
    """A settings file for `relay` commands on the test's database, in a folder of its own."""
    folder = tmp_path / "cli"
    folder.mkdir()
    return write_settings(folder, db_url, sink.url, webhooks=receiver.settings())


def stored() -> list[dict[str, Any]]:
    return list(Webhook.select().order_by(Webhook.id).dicts())


def test_a_case_s_life_in_signed_webhooks(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                          tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        world = World(db_url, app_factory, relay_factory, sink, receiver)
        life = new_case(world.app, reviewer=REVIEWER, reviewer_name=REVIEWER_NAME, review_id="R-life")
        world.jobs()  # the contact request goes out
        world.clock.advance(timedelta(days=4, minutes=1))  # a day before the deadline: the reminder
        world.jobs()
        world.says(REVIEWER, life.reviewer_address, ANSWER)
        world.jobs()  # the forward to the business, then the reply notice
        world.says(BUSINESS, life.business_address, REPLY)
        world.jobs()
        case_records.close_case(life.case_id, "resolved", world.clock.now())

        late = new_case(world.app, reviewer=LATE_REVIEWER, reviewer_name=REVIEWER_NAME, review_id="R-late")
        world.clock.advance(timedelta(days=5, minutes=1))
        world.jobs()  # request, reminder and expiry at once
        world.says(LATE_REVIEWER, late.reviewer_address, LATE_ANSWER)
        world.jobs()

        bounced = new_case(world.app, reviewer=BOUNCING, reviewer_name=REVIEWER_NAME, review_id="R-bounce")
        world.jobs()
        verp = sink.wait(BOUNCING)[0]["from"]
        assert smtp_send(world.relay.port, "", verp, dsn("failed", "5.1.1"))[0] == 250

        declined = new_case(world.app, review_id="R-declined", reviewer="d@example.com", reviewer_name=REVIEWER_NAME)
        with events.transaction():  # as the decline flow records it (relay.store.events)
            Case.update(state="declined").where(Case.id == declined.case_id).execute()
            events.record(declined.case_id, Event.CASE_DECLINED, world.clock.now())
        forget(world.app, LATE_REVIEWER)

        assert deliver(world.app).sent == len(stored())
    finally:
        receiver.stop()

    got = receiver.answered()
    assert got and all(r.verified for r in receiver.all())  # every signature checked by standardwebhooks
    assert Counter(r.id for r in got).most_common(1)[0][1] == 1  # each id once
    assert {r.id for r in got} == {w["msg_id"] for w in stored()} and {w["state"] for w in stored()} == {"sent"}
    by_case: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for r in sorted(got, key=lambda r: next(w["id"] for w in stored() if w["msg_id"] == r.id)):
        assert set(r.payload or {}) == {"type", "timestamp", "data"}
        by_case.setdefault(r.data["case"], []).append((r.type, r.data))
    assert {t for found in by_case.values() for t, _ in found} == {t.value for t in WebhookType}

    first = by_case[life.case_id]
    assert [t for t, _ in first] == ["case.opened", "case.request_delivered", "case.reminded", "case.replied",
                                     "message.forwarded", "message.forwarded", "case.closed"]
    assert first[0][1] == {"case": life.case_id, "review_id": "R-life", "business_id": "B-1",
                           "state": "awaiting_reply"}
    assert [d["state"] for _, d in first] == ["awaiting_reply"] * 3 + ["replied"] * 3 + ["closed"]
    assert [(d["direction"], d["late"]) for t, d in first if t == "message.forwarded"] == [
        ("reviewer_to_business", False), ("business_to_reviewer", False)]
    second = dict(by_case[late.case_id])
    assert second["case.expired"]["may_report"] is True and second["case.expired"]["state"] == "expired"
    assert second["message.forwarded"] == {"case": late.case_id, "review_id": "R-late", "business_id": "B-1",
                                           "state": "expired", "direction": "reviewer_to_business", "late": True}
    assert [t for t, _ in by_case[late.case_id]][-2:] == ["reviewer.forgotten", "case.closed"]
    failed = dict(by_case[bounced.case_id])["delivery.failed"]
    assert failed == {"case": bounced.case_id, "review_id": "R-bounce", "business_id": "B-1",
                      "state": "awaiting_reply", "party": "reviewer", "kind": "contact_request", "status": "5.1.1",
                      "reason": "bounced"}
    assert dict(by_case[declined.case_id])["case.declined"]["state"] == "declined"

    # nobody's address, name or words in any webhook: the check is shown to find them first in what
    # does carry them (the mail the relay sent), then finds none of them in what the endpoint got
    secrets = [REVIEWER, REVIEWER_NAME, LATE_REVIEWER, BOUNCING, BUSINESS, BUSINESS_NAME, REQUEST, ANSWER, REPLY,
               LATE_ANSWER, life.reviewer_address, life.business_address]
    mail = "\n".join(m["raw"].decode("utf-8", "replace") for m in sink.messages) + "\n".join(
        f"{m['from']} {m['to']}" for m in sink.messages)
    assert [s for s in secrets if not _found(s, [mail])] == []
    assert [s for s in secrets if _found(s, texts(receiver.all()))] == []


def _found(needle: str, haystacks: list[str]) -> bool:
    return any(needle.lower() in text.lower() for text in haystacks)


def test_failures_an_endpoint_down_and_back(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    receiver = Receiver(answers=[500, 503])
    try:
        world = World(db_url, app_factory, relay_factory, sink, receiver)
        opened = new_case(world.app, review_id="R-retry")
        assert deliver(world.app).deferred == 1  # 500
        assert deliver(world.app) == Counts()  # not due yet
        times = [stored()[0]["next_attempt_at"]]
        world.clock.set(times[-1])
        assert deliver(world.app).deferred == 1  # 503
        times.append(stored()[0]["next_attempt_at"])
        receiver.stop()  # down: connections refused
        for _ in range(2):
            world.clock.set(times[-1])
            assert deliver(world.app).deferred == 1
            times.append(stored()[0]["next_attempt_at"])
            assert "connection failed" in stored()[0]["last_error"]
        second = new_case(world.app, review_id="R-while-down")
        receiver.start()
        world.clock.set(times[-1])
        assert deliver(world.app).sent == 2
    finally:
        receiver.stop()
    at = [START, *times]
    assert [b - a for a, b in itertools.pairwise(at)] == list(DELAYS[:4])  # seconds, minutes, hours
    every = receiver.all()
    assert [r.status for r in every if r.data.get("case") == opened.case_id] == [500, 503, 204]
    assert len({r.id for r in every if r.data.get("case") == opened.case_id}) == 1  # one id on every attempt
    assert len({r.body for r in every if r.data.get("case") == opened.case_id}) == 1
    assert {r.data["case"] for r in receiver.answered()} == {opened.case_id, second.case_id}
    row = stored()[0]
    assert row["state"] == "sent" and row["attempts"] == 5 and row["last_error"] is None


def test_max_age_ends_in_failed_and_an_admin_retries(db_url: str, app_factory: Any, relay_factory: Any,
                                                      sink: Sink, tmp_path: Path) -> None:
    receiver = Receiver(status=500)
    try:
        world = World(db_url, app_factory, relay_factory, sink, receiver)
        new_case(world.app, review_id="R-max-age")
        passes = 0
        while stored()[0]["state"] == "pending":
            deliver(world.app)
            world.clock.set(stored()[0]["next_attempt_at"])
            passes += 1
        row = stored()[0]
        assert row["state"] == "failed" and row["attempts"] == passes == 12  # 3 days of 5 s ... 10 h
        assert row["last_error"].startswith("max_age over; last error: HTTP 500")
        config = cli_settings(tmp_path, db_url, sink, receiver)
        listed = json.loads(relay_cli(config, "webhooks", "--json").stdout)
        assert listed["failed"] == 1 and listed["webhooks"][0]["msg_id"] == row["msg_id"]
        assert "HTTP 500" in listed["webhooks"][0]["last_error"] and receiver.secret not in json.dumps(listed)
        status = json.loads(relay_cli(config, "status", "--json").stdout)["webhooks"]
        assert status["failed"] == 1 and status["enabled"] and status["stopped_since"] is None
        assert "token" not in status["endpoint"]  # the URL's query (a token) is never shown
        readable = relay_cli(config, "webhooks").stdout
        assert "failed 1" in readable and row["msg_id"] in readable
        receiver.status = 204
        retried = relay_cli(config, "webhooks", "retry", row["msg_id"])
        assert retried.returncode == 0 and f"webhook {row['msg_id']}: sent" in retried.stdout, retried
        again = relay_cli(config, "webhooks", "retry", str(row["id"]))
        assert again.returncode == 1 and "not pending or failed" in again.stderr
    finally:
        receiver.stop()
    assert len({r.id for r in receiver.all()}) == 1 and receiver.answered()[0].status == 204


def test_410_stops_the_endpoint_until_an_admin_enables_it(db_url: str, app_factory: Any, relay_factory: Any,
                                                          sink: Sink, tmp_path: Path) -> None:
    receiver = Receiver(status=410)
    try:
        world = World(db_url, app_factory, relay_factory, sink, receiver)
        for n in range(3):
            new_case(world.app, review_id=f"R-gone-{n}")
        assert deliver(world.app).stopped == 3
        gone_ids = {r.id for r in receiver.all()}
        world.clock.advance(timedelta(days=1))
        assert deliver(world.app) == Counts() and len(receiver.all()) == 3  # nothing more goes there
        new_case(world.app, review_id="R-gone-later")
        assert deliver(world.app) == Counts()
        assert [w["state"] for w in stored()] == ["pending"] * 4  # kept, not lost
        log = (tmp_path / "relay.log").read_text()
        stop_lines = [json.loads(line) for line in log.splitlines() if '"webhook.stopped"' in line]
        assert len(stop_lines) == 1 and stop_lines[0]["level"] == "error" and "410 Gone" in stop_lines[0]["msg"]

        config = cli_settings(tmp_path, db_url, sink, receiver)
        status = relay_cli(config, "status")
        assert "STOPPED since" in status.stdout and "relay webhooks enable" in status.stdout
        receiver.status = 200
        enabled = relay_cli(config, "webhooks", "enable")
        assert enabled.returncode == 0 and "4 pending" in enabled.stdout
        assert deliver(world.app).sent == 4
        assert "were not stopped" in relay_cli(config, "webhooks", "enable").stdout
    finally:
        receiver.stop()
    assert gone_ids <= {r.id for r in receiver.answered()}  # the same ids after the stop
    assert [w["state"] for w in stored()] == ["sent"] * 4
