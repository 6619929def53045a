"""Outbound delivery: the SMTP transport against real servers (plain, STARTTLS with login, 4xx,
5xx, nothing listening), the outbox worker's retries and failures with a moved clock, and the
business told once when the reviewer's mail system refuses what the relay sends."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from relay.core import policy
from relay.core.clock import ManualClock
from relay.core.outcomes import Outcome
from relay.core.retries import Result
from relay.core.vocabulary import Mail
from relay.inbound import intake, returns
from relay.outbound import durable, notice_queue
from relay.outbound import transports as transport
from relay.outbound.transports import MaildirTransport, SmtpTransport
from relay.outbound.worker import Worker
from relay.store import case_records as case_store
from relay.store.models import db
from tests.helpers.environment import Sink, free_port, new_case
from tests.helpers.reports import dsn
from tests.helpers.views import assert_no_leak

BODY = b"From: a@relay.test\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def send(transport: Any, recipient: str = "b@example.org") -> Any:
    return asyncio.run(transport.send("bounce-1-x@relay.test", recipient, BODY, "0000000001.relay"))


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_smtp_results_by_reply_code() -> None:
    for reply, expected in (("250 2.0.0 OK", Result.SENT), ("451 4.3.0 try later", Result.TEMPORARY),
                            ("554 5.7.1 rejected", Result.PERMANENT)):
        sink = Sink(reply=reply)
        try:
            attempt = send(SmtpTransport(sink.url, timeout=10, helo="relay.test"))
        finally:
            sink.stop()
        assert attempt.result is expected, attempt
        if expected is not Result.SENT:
            assert reply.split()[0] in attempt.detail
            assert attempt.about_recipient  # the answer to this message's data
    nobody = send(SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=5, helo="relay.test"))
    assert nobody.result is Result.TEMPORARY and "Connect" in nobody.detail


def test_starttls_and_login(tls_files: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content)
            return "250 2.0.0 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=(data.login, data.password) == (b"relay", b"s3cret"), handled=False)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, auth_required=True, authenticator=authenticator)
    controller.start()
    try:
        base = f"127.0.0.1:{port}?starttls=require&verify=no"
        ok = send(SmtpTransport(f"smtp://relay:s3cret@{base}", timeout=10, helo="relay.test"))
        assert ok.result is Result.SENT, ok
        wrong = send(SmtpTransport(f"smtp://relay:nope@{base}", timeout=10, helo="relay.test"))
        assert wrong.result is Result.PERMANENT and "535" in wrong.detail
        plain = send(SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=10, helo="relay.test"))
        assert plain.result is not Result.SENT  # the server demands STARTTLS first
    finally:
        controller.stop()
    assert len(received) == 1


def test_smtp_connections_are_reused_bounded_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages in a row share one session; concurrent ones open at most `connections`; a session
    on which something failed, or that sat idle too long, is not reused; close() says QUIT."""
    sink = Sink()

    closed: list[Any] = []
    really_close = transport._close

    async def close(client: Any) -> None:
        closed.append(client)
        await really_close(client)

    monkeypatch.setattr(transport, "_close", close)

    async def scenario() -> None:
        smtp = SmtpTransport(sink.url, timeout=10, helo="relay.test", connections=2)
        for n in range(4):
            assert (await smtp.send("bounce-1-x@relay.test", f"r{n}@example.org", BODY, "n")).result is Result.SENT
        sink.reply = "550 5.7.1 not today"  # on the session of the four
        refused = await smtp.send("bounce-1-x@relay.test", "x@example.org", BODY, "n")
        assert refused.result is Result.PERMANENT and len(closed) == 1 and not closed[0].is_connected
        sink.reply = "250 2.0.0 OK"
        assert (await smtp.send("bounce-1-x@relay.test", "r4@example.org", BODY, "n")).result is Result.SENT
        with pytest.raises(TypeError):  # not even a message: the session is closed all the same
            await smtp.send("bounce-1-x@relay.test", "y@example.org", None, "n")  # type: ignore[arg-type]
        assert smtp.idle == [] and len(closed) == 2 and not closed[1].is_connected
        assert (await smtp.send("bounce-1-x@relay.test", "after@example.org", BODY, "n")).result is Result.SENT
        results = await asyncio.gather(*(smtp.send("bounce-1-x@relay.test", f"c{n}@example.org", BODY, "n")
                                         for n in range(6)))
        assert all(r.result is Result.SENT for r in results)
        monkeypatch.setattr(transport, "IDLE_SECONDS", 0.0)
        assert (await smtp.send("bounce-1-x@relay.test", "idle@example.org", BODY, "n")).result is Result.SENT
        open_before = [c for c, _ in smtp.idle]
        assert open_before
        await smtp.close()
        assert smtp.idle == [] and not any(c.is_connected for c in open_before)

    try:
        asyncio.run(scenario())
    finally:
        sink.stop()
    peers = {m["to"][0]: m["peer"] for m in sink.messages}
    assert len({peers[f"r{n}@example.org"] for n in range(4)}) == 1  # one session for four in a row
    assert peers["r4@example.org"] != peers["r0@example.org"]  # the session with a refusal was closed
    assert peers["after@example.org"] != peers["r4@example.org"]  # and the one with an exception
    concurrent = {peers[f"c{n}@example.org"] for n in range(6)}
    assert len(concurrent) <= 2  # never more than two at once
    assert peers["idle@example.org"] not in concurrent | {peers["after@example.org"]}  # idle too long: new


def test_maildir_delivery_is_atomic_and_idempotent(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")
    assert send(transport).result is Result.SENT
    assert list((tmp_path / "box").glob("new/*")) == []  # only settled files are published
    asyncio.run(transport.settle(["0000000001.relay"]))
    assert send(transport).result is Result.SENT  # a retry of the same delivery replaces its file
    assert send(transport).result is Result.SENT
    asyncio.run(transport.settle(["0000000001.relay"]))
    files = list((tmp_path / "box" / "new").iterdir())
    assert [f.name for f in files] == ["0000000001.relay"]
    assert files[0].read_bytes().startswith(b"Return-Path: <bounce-1-x@relay.test>\r\nDelivered-To: b@example.org")
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    with pytest.raises(OSError, match="never handed over"):  # settling what was not sent: not "sent"
        asyncio.run(transport.settle(["0000000002.relay"]))


@pytest.mark.parametrize("whole_file_system", [True, False], ids=["syncfs", "fsync-each"])
def test_maildir_batch_not_published_counts_as_not_sent(db_url: str, app_factory: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         whole_file_system: bool) -> None:
    """A batch whose files cannot be published into new/ is retried, never recorded as sent; the
    retry publishes it once. Both ways of syncing (one file-system sync, a sync per file)."""
    if not whole_file_system:
        monkeypatch.setattr(durable, "_SYNCFS", None)
    clock = ManualClock()
    app = app_factory(db_url, clock)
    box = tmp_path / "box"
    worker = Worker(app, MaildirTransport(box))
    opened = new_case(app)
    name = f"{case_store.case_detail(opened.case_id).deliveries[0].id:010d}.relay"
    (box / "new" / name / "in the way").mkdir(parents=True)  # the rename into new/ fails
    first = asyncio.run(worker.run_pass())
    assert (first.sent, first.deferred) == (0, 1)
    delivery = case_store.case_detail(opened.case_id).deliveries[0]
    assert delivery.state == "queued" and "durable" in delivery.last_error
    (box / "new" / name / "in the way").rmdir()
    (box / "new" / name).rmdir()
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(worker.run_pass()).sent == 1
    assert [f.name for f in (box / "new").iterdir()] == [name]
    assert list((box / "tmp").iterdir()) == []


def test_maildir_that_cannot_be_written_defers_the_batch(db_url: str, app_factory: Any, tmp_path: Path) -> None:
    """The files of a batch are written when it is settled; if that fails, the batch is deferred
    with the reason, and delivered once the folder can be written again."""
    clock = ManualClock()
    app = app_factory(db_url, clock)
    box = tmp_path / "box"
    box.mkdir()
    (box / "tmp").write_text("a file where the maildir wants a folder")
    worker = Worker(app, MaildirTransport(box))
    opened = new_case(app)
    assert asyncio.run(worker.run_pass()).deferred == 1
    delivery = case_store.case_detail(opened.case_id).deliveries[0]
    assert delivery.state == "queued" and "durable" in delivery.last_error
    (box / "tmp").unlink()
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(worker.run_pass()).sent == 1
    assert len(list((box / "new").iterdir())) == 1


def test_worker_retries_then_delivers_and_gives_up(db_url: str, app_factory: Any) -> None:
    clock = ManualClock()
    sink = Sink(reply="451 4.3.0 greylisted")
    try:
        app = app_factory(db_url, clock, outbound={"max_queue_lifetime": "10m"})
        worker = Worker(app, SmtpTransport(sink.url, timeout=10, helo="relay.test"))
        opened = new_case(app)
        first = asyncio.run(worker.run_pass())
        assert (first.sent, first.deferred, first.failed) == (0, 1, 0)
        assert asyncio.run(worker.run_pass()).deferred == 0  # not due yet: nothing is tried
        clock.advance(timedelta(minutes=1))
        sink.reply = "250 2.0.0 OK"
        assert asyncio.run(worker.run_pass()).sent == 1
        detail = case_store.case_detail(opened.case_id)
        assert detail.deliveries[0].state == "sent" and detail.deliveries[0].attempts == 2

        sink.reply = "550 5.1.1 no such user"
        rejected = new_case(app, review_id="R-rejected")
        # refused at DATA: the business's reviewer_unreachable notice is queued, and refused too
        # (this sink refuses everyone), which tells nobody
        assert asyncio.run(worker.run_pass()).failed == 2
        failed, notice = case_store.case_detail(rejected.case_id).deliveries
        assert failed.state == "failed" and "550 5.1.1" in failed.last_error
        assert (notice.kind, notice.recipient_party, notice.state) == (
            "reviewer_unreachable", "business", "failed")

        sink.reply = "421 4.7.0 go away"
        stuck = new_case(app, review_id="R-stuck")
        for _ in range(4):  # 1 + 2 + 4 minutes of backoff, then the 10 minute lifetime is over
            asyncio.run(worker.run_pass())
            clock.advance(timedelta(minutes=8))
        last = case_store.case_detail(stuck.case_id).deliveries[0]
        assert last.state == "failed" and "lifetime" in last.last_error and "421" in last.last_error
    finally:
        sink.stop()


def test_smarthost_replies_are_stored_without_addresses() -> None:
    sink = Sink(reply="550 5.1.1 <b@example.org>: Recipient address rejected; user b.x+1@sub.example.org unknown")
    try:
        attempt = send(SmtpTransport(sink.url, timeout=10, helo="relay.test"))
    finally:
        sink.stop()
    assert attempt.result is Result.PERMANENT
    assert "@" not in attempt.detail and attempt.detail.startswith("550 5.1.1 <<address>>")


REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"


class Smarthost:
    """A real SMTP server on a loopback port that refuses at RCPT TO, one recipient at a time, the
    way a smarthost answers for a mailbox it knows to be gone (`refused`: {address: reply}), or
    refuses the session's MAIL FROM (`sender_reply`); it captures what it takes."""

    def __init__(self) -> None:
        self.refused: dict[str, str] = {}
        self.sender_reply: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        host = self

        class Handler:
            async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                                  mail_options: list[str]) -> str:
                if host.sender_reply is not None:
                    return host.sender_reply
                envelope.mail_from = address
                envelope.mail_options.extend(mail_options)
                return "250 OK"

            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                                  rcpt_options: list[str]) -> str:
                if address.lower() in host.refused:
                    return host.refused[address.lower()]
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with host.lock:
                    host.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                          "raw": envelope.original_content})
                return "250 2.0.0 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, rcpt: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if rcpt in m["to"]]

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smarthost() -> Any:
    host = Smarthost()
    yield host
    host.stop()


def unreachable_notices(case_id: int) -> list[dict[str, Any]]:
    return [d for d in case_store.case_detail(case_id).deliveries if d.kind == "reviewer_unreachable"]


def business_writes(app: Any, opened: Any, body: str) -> None:
    """The business writes to the case's business-side relay address: a forward to the reviewer.
    The address takes it only once the reviewer has answered (asked here as RCPT TO asks)."""
    conversation = intake.lookup(app, opened.business_address.split("@")[0])
    assert conversation is not None
    lifetime = app.settings.cases.conversation_lifetime
    assert policy.check_recipient(opened.business_address, "relay.test", conversation, app.clock.now(), lifetime,
                                  BUSINESS) is Outcome.RECIPIENT_OK
    raw = f"From: Shop <{BUSINESS}>\r\nSubject: Re: review\r\n\r\n{body}\r\n".encode()
    assert intake.process(app, conversation, BUSINESS, raw).outcome is Outcome.ACCEPTED


def reviewer_writes(app: Any, opened: Any, body: str) -> None:
    """The reviewer answers from their registered address (their own server sends it)."""
    conversation = intake.lookup(app, opened.reviewer_address.split("@")[0])
    raw = f"From: Max <{REVIEWER}>\r\nSubject: Re: review\r\n\r\n{body}\r\n".encode()
    assert intake.process(app, conversation, REVIEWER, raw).outcome is Outcome.ACCEPTED


def test_a_reviewer_refused_at_rcpt_is_reported_to_the_business_once(db_url: str, app_factory: Any,
                                                                     smarthost: Smarthost) -> None:
    """The smarthost refuses the reviewer's mailbox at RCPT (550 5.1.1): the contact request ends
    failed and the business gets the reviewer_unreachable notice, queued with that failure; a
    second refused delivery to the reviewer (a forward) and a later bounce of yet another one add
    no second notice."""
    clock = ManualClock()
    app = app_factory(db_url, clock, outbound={"url": smarthost.url})
    worker = Worker(app, SmtpTransport(smarthost.url, timeout=10, helo="relay.test"))
    smarthost.refused[REVIEWER] = "550 5.1.1 <max.mueller@example.de>: Recipient address rejected: User unknown"
    opened = new_case(app, locale="en")

    first = asyncio.run(worker.run_pass())
    detail = case_store.case_detail(opened.case_id)
    request = next(d for d in detail.deliveries if d.kind == "contact_request")
    assert request.state == "failed" and "550 5.1.1" in request.last_error
    assert [e.detail for e in detail.events if e.name == "notice.queued"] == [
        "contact_request", "reviewer_unreachable"]
    asyncio.run(worker.run_pass())  # the notice is delivered (in the first pass already: it is due at once)
    assert (first.failed, first.sent) == (1, 1)
    [notice] = unreachable_notices(opened.case_id)
    assert notice.state == "sent" and notice.recipient_party == "business"
    [mail] = smarthost.to(BUSINESS)
    parsed = email.message_from_bytes(mail["raw"], policy=email.policy.default)
    assert "could not be delivered" in str(parsed["Subject"])
    assert "refused" in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert_no_leak(mail["raw"])  # the smarthost's reply quoted the address; the notice does not
    assert smarthost.to(REVIEWER) == []

    # the reviewer answers all the same (their mailbox refuses mail, their server still sends), and
    # the business writes back; the forward is refused the same way: no second notice
    reviewer_writes(app, opened, "Order 4711, but my mailbox is full")
    business_writes(app, opened, "Are you there?")
    assert asyncio.run(worker.run_pass()).failed == 1  # (the reviewer's forward reaches the business)
    forward = next(d for d in case_store.case_detail(opened.case_id).deliveries
                   if d.kind == "forward" and d.recipient_party == "reviewer")
    assert forward.state == "failed" and "550 5.1.1" in forward.last_error
    assert len(unreachable_notices(opened.case_id)) == 1

    # the mailbox takes mail again; a reminder is sent, then bounces later: still one notice
    del smarthost.refused[REVIEWER]
    with db.atomic():
        assert notice_queue.queue_notice(app, opened.case_id, Mail.REMINDER, clock.now())
    assert asyncio.run(worker.run_pass()).sent == 1
    reminder = next(d for d in case_store.case_detail(opened.case_id).deliveries if d.kind == "reminder")
    assert reminder.state == "sent" and len(smarthost.to(REVIEWER)) == 1
    delivery = returns.lookup(app, reminder.id, clock.now())
    assert delivery is not None
    assert returns.process(app, delivery, "", dsn("failed", "5.1.1")).outcome is Outcome.BOUNCE_RECORDED
    detail = case_store.case_detail(opened.case_id)
    assert next(d for d in detail.deliveries if d.kind == "reminder").state == "failed"
    assert len(unreachable_notices(opened.case_id)) == 1
    assert [e.detail for e in detail.events if e.name == "notice.queued"] == [
        "contact_request", "reviewer_unreachable", "reminder"]
    assert asyncio.run(worker.run_pass()).sent == 0
    assert len(smarthost.to(BUSINESS)) == 2  # the notice and the reviewer's answer


def test_a_refused_delivery_to_the_business_tells_nobody(db_url: str, app_factory: Any,
                                                         smarthost: Smarthost) -> None:
    """The reviewer answers; the business's mailbox refuses the forward at RCPT: the forward ends
    failed, and no reviewer_unreachable notice is queued (nor anything else)."""
    app = app_factory(db_url, ManualClock(), outbound={"url": smarthost.url})
    worker = Worker(app, SmtpTransport(smarthost.url, timeout=10, helo="relay.test"))
    smarthost.refused[BUSINESS] = "550 5.1.1 mailbox unavailable"
    opened = new_case(app, locale="en")
    assert asyncio.run(worker.run_pass()).sent == 1
    conversation = intake.lookup(app, opened.reviewer_address.split("@")[0])
    raw = f"From: Max <{REVIEWER}>\r\nSubject: Re: review\r\n\r\nOrder 4711\r\n".encode()
    assert intake.process(app, conversation, REVIEWER, raw).outcome is Outcome.ACCEPTED
    counts = asyncio.run(worker.run_pass())
    detail = case_store.case_detail(opened.case_id)
    forward = next(d for d in detail.deliveries if d.kind == "forward")
    assert forward.state == "failed" and "550 5.1.1" in forward.last_error
    assert unreachable_notices(opened.case_id) == []
    assert "reviewer_unreachable" not in [e.detail for e in detail.events]
    assert counts.failed >= 1 and smarthost.to(BUSINESS) == []


def test_failures_that_are_not_the_reviewers_refusal_tell_nobody(db_url: str, app_factory: Any,
                                                                 smarthost: Smarthost) -> None:
    """The smarthost refusing the relay itself (5xx to MAIL FROM: the same for every recipient) and
    a queue lifetime that ran out after temporary failures are not the reviewer's mail system
    refusing the message: the delivery ends failed, the business is not told."""
    clock = ManualClock()
    app = app_factory(db_url, clock, outbound={"url": smarthost.url, "max_queue_lifetime": "10m"})
    worker = Worker(app, SmtpTransport(smarthost.url, timeout=10, helo="relay.test"))

    smarthost.sender_reply = "553 5.7.1 sender address rejected: not owned by user"
    refused_session = new_case(app, locale="en", review_id="R-sender")
    assert asyncio.run(worker.run_pass()).failed == 1
    request = case_store.case_detail(refused_session.case_id).deliveries[0]
    assert request.state == "failed" and "553" in request.last_error
    assert unreachable_notices(refused_session.case_id) == []

    smarthost.sender_reply = None
    smarthost.refused[REVIEWER] = "450 4.2.0 mailbox busy"
    stuck = new_case(app, locale="en", review_id="R-stuck")
    for _ in range(4):  # 1 + 2 + 4 minutes of backoff, then the 10 minute lifetime is over
        asyncio.run(worker.run_pass())
        clock.advance(timedelta(minutes=8))
    request = case_store.case_detail(stuck.case_id).deliveries[0]
    assert request.state == "failed" and "lifetime" in request.last_error
    assert unreachable_notices(stuck.case_id) == []
    assert smarthost.to(BUSINESS) == []
