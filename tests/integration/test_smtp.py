"""The relay over real SMTP on loopback, on SQLite and PostgreSQL: a conversation both ways, the
refusals with their exact codes, database failure, and a slow client that must not block others."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from typing import Any

from relay.store import case_records as case_store
from tests.helpers.environment import Sink, new_case, raw_sql
from tests.helpers.smtp import smtp_send, swaks
from tests.helpers.views import assert_no_leak
from tests.helpers.waiting import log_text

REVIEWER = "max.mueller@example.de"
BUSINESS = "service@shop.example"


def start(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, **sections: Any) -> Any:
    app = app_factory(db_url, outbound={"url": sink.url}, **sections)
    return app, relay_factory(app)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_conversation_both_ways(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink, cases={"reply_notice_after": "0s"})
    opened = new_case(app)
    request = sink.wait(REVIEWER)
    assert len(request) == 1
    assert request[0]["from"].startswith("bounce-") and request[0]["from"].endswith("@relay.test")
    assert BUSINESS not in request[0]["raw"].decode("latin-1")

    code, text = swaks(relay.port, REVIEWER, opened.reviewer_address,
                       f"Hallo, meine Bestellnummer ist BE-48213.\n\nViele Gruesse\nMax Mueller\n{REVIEWER}",
                       header_from=f"Maximilian Mueller <{REVIEWER}>",
                       extra=["--header", f"Message-Id: <r1.{REVIEWER}>"])
    assert (code, text.split(" ")[0]) == (250, "2.0.0"), text
    forward = sink.wait(BUSINESS, kind="forward")
    assert len(forward) == 1
    raw = forward[0]["raw"]
    assert_no_leak(raw)
    assert REVIEWER not in forward[0]["from"] and forward[0]["from"].endswith("@relay.test")
    fwd = parse(raw)
    assert "BE-48213" in fwd.get_content()
    assert fwd["From"].addresses[0].addr_spec == opened.business_address
    assert str(fwd["Reply-To"]) == opened.business_address
    assert "Maximilian" not in raw.decode("latin-1")

    answer = (f"From: Beispiel Shop <{BUSINESS}>\r\nTo: {opened.business_address}\r\n"
              f"Subject: Re: Ihre Anfrage\r\nMessage-ID: <answer-1@shop.example>\r\n"
              f"In-Reply-To: {fwd['Message-ID']}\r\nReferences: {fwd['Message-ID']}\r\n\r\n"
              f"Danke, wir haben die Bestellung gefunden. Antworten Sie an {BUSINESS}.\r\n").encode()
    code, text = smtp_send(relay.port, BUSINESS, opened.business_address, answer)
    assert code == 250, text
    back = sink.wait(REVIEWER, count=2)
    assert len(back) == 2
    notices = sink.wait(BUSINESS, kind="notice")
    assert len(notices) == 1 and "Antwort auf Ihre Anfrage" in str(parse(notices[0]["raw"])["Subject"])
    assert_no_leak(notices[0]["raw"])
    assert_no_leak(back[1]["raw"], BUSINESS)
    reply = parse(back[1]["raw"])
    assert "Bestellung gefunden" in reply.get_content()
    assert reply["From"].addresses[0].addr_spec == opened.reviewer_address
    # the reviewer's client threads the answer under the message the reviewer sent, whose id the
    # business never saw (it holds the reviewer's address)
    assert reply["In-Reply-To"] == f"<r1.{REVIEWER}>"
    assert fwd["Message-ID"].endswith("@relay.test>")
    detail = case_store.case_detail(opened.case_id)
    assert detail.case.state == "replied"
    assert [m.sender for m in detail.messages] == ["reviewer", "business"]
    log = log_text(app.settings.log.file, "delivery.sent")
    assert "inbound.accepted" in log and "delivery.sent" in log and REVIEWER not in log.lower()


def test_refusals_have_exact_codes(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    plain = f"From: {REVIEWER}\r\nSubject: x\r\n\r\nHallo\r\n".encode()

    code, text = smtp_send(relay.port, REVIEWER, "victim@elsewhere.example", plain)
    assert (code, text[:5]) == (550, "5.7.1") and "Relaying denied" in text
    code, text = smtp_send(relay.port, REVIEWER, "nobody-" + "z" * 25 + "@relay.test", plain)
    assert (code, text[:5]) == (550, "5.1.1")
    code, text = smtp_send(relay.port, REVIEWER, "a" * 32 + "@relay.test", plain)
    assert (code, text[:5]) == (550, "5.1.1")
    code, text = smtp_send(relay.port, "intruder@evil.example", opened.reviewer_address,
                           b"From: intruder@evil.example\r\nSubject: x\r\n\r\nfake\r\n")
    assert (code, text[:5]) == (550, "5.7.1") and "address that received" in text
    # the business may not write to the reviewer's address, nor the reviewer to the business's
    code, text = smtp_send(relay.port, BUSINESS, opened.reviewer_address,
                           f"From: {BUSINESS}\r\nSubject: x\r\n\r\nx\r\n".encode())
    assert (code, text[:5]) == (550, "5.7.1")
    code, text = smtp_send(relay.port, REVIEWER, [opened.reviewer_address, opened.business_address], plain)
    assert (code, text[:5]) == (452, "4.5.3")
    big = plain + (b"x" * 998 + b"\r\n") * 1100
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, big)
    assert (code, text[:5]) == (552, "5.3.4"), text
    code, text = swaks(relay.port, REVIEWER, opened.reviewer_address, "Hallo",
                       extra=["--attach-type", "application/octet-stream", "--attach-body",
                              f"vcard EMAIL:{REVIEWER}"])
    assert (code, text[:5]) == (554, "5.6.0"), text

    case_store.close_case(opened.case_id, "withdrawn", app.clock.now())
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, plain)
    assert (code, text[:5]) == (550, "5.1.1") and "closed" in text
    time.sleep(0.5)
    assert sink.to(BUSINESS) == []  # nothing refused was forwarded
    log = (app.settings.log.file).read_text()
    assert "inbound.refused" in log and REVIEWER not in log


def test_database_failure_answers_451_and_loses_nothing(db_url: str, app_factory: Any, relay_factory: Any,
                                                        sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    sink.wait(REVIEWER)
    message = f"From: {REVIEWER}\r\nSubject: Re\r\n\r\nBestellung BE-1\r\n".encode()
    raw_sql(db_url, "ALTER TABLE delivery RENAME TO delivery_away")
    try:
        code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, message)
    finally:
        raw_sql(db_url, "ALTER TABLE delivery_away RENAME TO delivery")
    assert (code, text[:5]) == (451, "4.3.0"), text
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, message)
    assert code == 250, text
    assert len(sink.wait(BUSINESS, kind="forward")) == 1


def test_slow_data_does_not_stall_other_connections(db_url: str, app_factory: Any, relay_factory: Any,
                                                    sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    slow = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    reader = slow.makefile("rb")

    def say(line: bytes) -> bytes:
        slow.sendall(line)
        return reader.readline()

    reader.readline()  # greeting
    slow.sendall(b"EHLO slow.example\r\n")
    while not reader.readline().startswith(b"250 "):
        pass
    assert say(f"MAIL FROM:<{REVIEWER}>\r\n".encode()).startswith(b"250")
    assert say(f"RCPT TO:<{opened.reviewer_address}>\r\n".encode()).startswith(b"250")
    assert say(b"DATA\r\n").startswith(b"354")
    slow.sendall(f"From: {REVIEWER}\r\nSubject: slow\r\n\r\nerster Teil ".encode())

    started = time.monotonic()
    code, _ = smtp_send(relay.port, REVIEWER, opened.reviewer_address,
                        f"From: {REVIEWER}\r\nSubject: fast\r\n\r\nschnell\r\n".encode())
    assert code == 250 and time.monotonic() - started < 5
    assert say(b"zweiter Teil\r\n.\r\n").startswith(b"250")
    slow.close()
    subjects = sorted(str(parse(m["raw"])["Subject"]) for m in sink.wait(BUSINESS, count=2, kind="forward"))
    assert subjects == ["fast", "slow"]


def test_every_address_that_names_the_sender_is_hidden(db_url: str, app_factory: Any, relay_factory: Any,
                                                       sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    forwarder, private = "srs0=hh=tt=example.de=max.mueller@forwarder.example", "max.private@example.org"
    message = (f"From: Max <{REVIEWER}>\r\nReply-To: {private}\r\nSender: {forwarder}\r\nSubject: Re\r\n"
               f"Cc: Freundin <friend@example.org>, {private}\r\n\r\n"
               f"Bestellung BE-9. Privat: {private}, weitergeleitet von {forwarder}\r\n").encode()
    code, text = smtp_send(relay.port, forwarder, opened.reviewer_address, message)
    assert code == 250, text
    raw = sink.wait(BUSINESS, kind="forward")[0]["raw"]
    for address in (REVIEWER, forwarder, private):
        assert_no_leak(raw, address)
    assert "BE-9" in parse(raw).get_content()
    assert b"friend@example.org" not in raw and len(sink.messages) == 2  # request and forward: no copies
    log = log_text(app.settings.log.file, "Cc/Bcc recipient(s)")
    assert "2 Cc/Bcc recipient(s) of the reviewer not relayed" in log and "friend@" not in log
