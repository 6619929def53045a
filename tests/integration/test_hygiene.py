"""Hostile and automatic mail over real SMTP: auto-replies, bounces to signed addresses, forged
bounces, loops, rate and probe limits, shape limits, SMTP smuggling and STARTTLS."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import socket
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from relay import logs
from relay.core.clock import ManualClock
from relay.store import case_records as case_store
from relay.store import outbox as outbox_store
from tests.helpers.environment import Sink, new_case
from tests.helpers.reports import dsn
from tests.helpers.smtp import smtp_send
from tests.helpers.views import assert_no_leak

REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"


def start(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, clock: Any = None, **sections: Any) -> Any:
    app = app_factory(db_url, clock, outbound={"url": sink.url}, **sections)
    return app, relay_factory(app)


def reviewer_mail(body: str = "Hallo", **headers: str) -> bytes:
    lines = [f"From: Max <{REVIEWER}>", "Subject: Re: Ihre Anfrage"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + f"\r\n\r\n{body}\r\n").encode()


@pytest.mark.parametrize("headers", [{"Auto_Submitted": "auto-replied"}, {"Subject": "Abwesenheitsnotiz"},
                                     {"Precedence": "bulk"}, {"X_Autoreply": "yes"}])
def test_auto_replies_are_accepted_but_not_forwarded(db_url: str, app_factory: Any, relay_factory: Any,
                                                     sink: Sink, headers: dict[str, str]) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    raw = reviewer_mail("Ich bin bis Montag nicht im Büro.", **headers)
    if "Subject" in headers:
        raw = raw.replace(b"Subject: Re: Ihre Anfrage\r\n", b"")
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, raw)
    assert (code, text[:5]) == (250, "2.0.0") and "Automatic reply" in text
    assert smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail("Echte Antwort"))[0] == 250
    forwards = sink.wait(BUSINESS, kind="forward")
    assert len(forwards) == 1 and b"Echte Antwort" in forwards[0]["raw"]
    detail = case_store.case_detail(opened.case_id)
    assert [e.name for e in detail.events].count("autoreply.dropped") == 1
    assert len(detail.messages) == 1  # the auto-reply is not a message of the conversation


def test_bounces_come_back_to_signed_addresses(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    request = sink.wait(REVIEWER)[0]
    verp = request["from"]
    assert verp.startswith("bounce-") and verp.endswith("@relay.test")

    # a forged or malformed bounce address is refused at RCPT; so is an empty sender to a party
    delivery_id, signature = verp.split("@")[0].split("-")[1:]
    forged = f"bounce-{delivery_id}-{'0' * len(signature)}@relay.test"
    for address in (forged, f"bounce-{int(delivery_id) + 1}-{signature}@relay.test", "bounce-x@relay.test"):
        code, text = smtp_send(relay.port, "", address, dsn("failed", "5.1.1"))
        assert (code, text[:5]) == (550, "5.7.1"), (address, text)
    code, text = smtp_send(relay.port, "", opened.reviewer_address, dsn("failed", "5.1.1"))
    assert (code, text[:5]) == (550, "5.7.1") and "empty sender" in text

    code, text = smtp_send(relay.port, "", verp, dsn("failed", "5.1.1"))
    assert (code, text[:5]) == (250, "2.0.0") and "Delivery report" in text
    delivery = case_store.case_detail(opened.case_id).deliveries[0]
    assert delivery.state == "failed" and "5.1.1" in delivery.last_error
    notices = sink.wait(BUSINESS, kind="notice")
    assert len(notices) == 1 and "nicht zugestellt" in str(email.message_from_bytes(
        notices[0]["raw"], policy=email.policy.default)["Subject"])
    assert_no_leak(notices[0]["raw"])  # the bounce quoted the address; the notice must not
    assert sink.to(BUSINESS, "forward") == []  # a bounce is never forwarded
    # a second report for the same delivery adds no second notice
    assert smtp_send(relay.port, "", verp, dsn("failed", "5.1.1"))[0] == 250
    assert len(sink.wait(BUSINESS, count=2, timeout=2, kind="notice")) == 1
    assert outbox_store.state_counts().get("failed") == 1


def test_bounce_addresses_expire(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path) -> None:
    clock = ManualClock()
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink, clock)
    new_case(app)
    verp = sink.wait(REVIEWER)[0]["from"]
    clock.advance(timedelta(days=36))
    code, text = smtp_send(relay.port, "", verp, dsn("failed", "5.1.1"))
    assert (code, text[:5]) == (550, "5.7.1") and "expired" in text


def test_a_forward_to_the_business_that_bounces_shows_in_the_case(db_url: str, app_factory: Any,
                                                                  relay_factory: Any, sink: Sink) -> None:
    app, relay = start(db_url, app_factory, relay_factory, sink)
    opened = new_case(app)
    assert smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail("BE-1"))[0] == 250
    verp = sink.wait(BUSINESS, kind="forward")[0]["from"]
    assert smtp_send(relay.port, "", verp, dsn("failed", "5.2.2"))[0] == 250
    detail = case_store.case_detail(opened.case_id)
    forward = next(d for d in detail.deliveries if d.kind == "forward")
    assert forward.state == "failed" and "5.2.2" in forward.last_error
    assert any(e.name == "bounce.received" and "forward to the business" in e.detail for e in detail.events)


def test_one_bounce_is_one_log_line(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path) -> None:
    """A delivery report at a bounce address writes bounce.received once (with the reply, the
    delivery's queue id and, for a permanent failure, at warning level), and stores it once."""
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink)
    opened = new_case(app)
    request = sink.wait(REVIEWER)[0]
    assert smtp_send(relay.port, "", request["from"], dsn("failed", "5.1.1"))[0] == 250
    sink.wait(BUSINESS, kind="notice")  # the bounce's work is done, its line queued
    logs.close()  # everything queued is written
    lines = [json.loads(line) for line in (tmp_path / "relay.log").read_text().splitlines()]
    bounces = [line for line in lines if line["event"] == "bounce.received"]
    assert len(bounces) == 1, bounces
    [line] = bounces
    assert line["level"] == "warning" and line["case"] == opened.case_id
    assert line["reply"].startswith("250 2.0.0") and line["outcome"] == "bounce_recorded"
    assert line["qid"] == case_store.case_detail(opened.case_id).deliveries[0].queue_id
    assert [e.name for e in case_store.case_detail(opened.case_id).events].count("bounce.received") == 1


def test_loops_are_refused(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path) -> None:
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink)
    opened = new_case(app)
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail(X_Relay_Loop="relay.test"))
    assert (code, text[:5]) == (554, "5.4.6")
    hops = "".join(f"Received: from hop{n}.example by hop{n + 1}.example\r\n" for n in range(31)).encode()
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, hops + reviewer_mail())
    assert (code, text[:5]) == (554, "5.4.6")
    # what the relay sends carries the marker, so it is refused if it ever comes back
    request = sink.wait(REVIEWER)[0]["raw"]
    assert b"\r\nX-Relay-Loop: relay.test\r\n" in request
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address,
                           request.replace(b"From: Beispiel Shop GmbH via ReviewHub", f"From: <{REVIEWER}>".encode()))
    assert (code, text[:5]) == (554, "5.4.6")


def test_rate_probe_and_shape_limits(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path) -> None:
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink,
                       limits={"messages_per_case_per_hour": 3, "unknown_recipients_per_client": 6, "max_recipients": 4,
                               "max_line_bytes": 2000, "max_header_count": 20, "max_header_bytes": 4096})
    opened = new_case(app)
    for n in range(3):
        assert smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail(f"Nachricht {n}"))[0] == 250
    code, text = smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail("eine zu viel"))
    assert (code, text[:5]) == (451, "4.7.1")

    other = new_case(app, review_id="R-shape")
    long_line = reviewer_mail("x" * 2500)
    assert smtp_send(relay.port, REVIEWER, other.reviewer_address, long_line)[1][:5] == "5.3.4"
    many = "".join(f"X-Field-{n}: v\r\n" for n in range(25)).encode() + reviewer_mail()
    assert smtp_send(relay.port, REVIEWER, other.reviewer_address, many)[1][:5] == "5.3.4"
    huge = f"X-Big: {'y' * 5000}\r\n".encode() + reviewer_mail()
    assert smtp_send(relay.port, REVIEWER, other.reviewer_address, huge)[1][:5] == "5.3.4"
    fine = reviewer_mail("a" * 1900 + "\n" + "b" * 1900)  # long lines under the limit, bare LF
    assert smtp_send(relay.port, REVIEWER, other.reviewer_address, fine)[0] == 250

    # recipients per transaction: the fifth RCPT is refused whatever it names
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo("many.example")
        s.mail(REVIEWER)
        codes = [s.rcpt(f"someone{n}@elsewhere.example")[0] for n in range(4)] + [s.rcpt(other.reviewer_address)]
        assert codes[:4] == [550] * 4 and codes[4][0] == 452 and codes[4][1].startswith(b"4.5.3")

    # address harvesting: past 6 unknown recipients (4 above) the client is cut off, also in a new session
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo("harvester.example")
        s.mail("x@harvester.example")
        codes = [s.rcpt(f"{'a' * 31}{n}@relay.test")[0] for n in range(2, 5)]
        assert codes == [550, 550, 421]
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    code, text = smtp_send(relay.port, REVIEWER, opened.business_address, reviewer_mail())
    assert (code, text[:5]) == (421, "4.7.0")


def test_exempt_clients_are_never_cut_off(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path) -> None:
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink,
                       limits={"unknown_recipients_per_client": 2, "exempt_clients": ["127.0.0.1"]})
    opened = new_case(app)
    for n in range(5):
        assert smtp_send(relay.port, REVIEWER, f"{'a' * 31}{n + 2}@relay.test", reviewer_mail())[0] == 550
    assert smtp_send(relay.port, REVIEWER, opened.reviewer_address, reviewer_mail())[0] == 250


def test_smuggling_sequences_do_not_end_data(app_factory: Any, relay_factory: Any, sink: Sink,
                                              tmp_path: Path) -> None:
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink)
    opened = new_case(app)
    smuggled = (f"RCPT TO:<{opened.business_address}>\r\nDATA\r\nFrom: {REVIEWER}\r\nSubject: smuggled\r\n\r\n"
                "second message\r\n.\r\n").encode()
    for separator in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\n", b"\r\n.\n"):
        body = reviewer_mail("erste Nachricht").rstrip(b"\r\n") + separator + b"MAIL FROM:<" + REVIEWER.encode() \
            + b">\r\n" + smuggled
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as conn:
            reader = conn.makefile("rb")
            reader.readline()
            for line in (b"EHLO smuggler.example\r\n", f"MAIL FROM:<{REVIEWER}>\r\n".encode(),
                         f"RCPT TO:<{opened.reviewer_address}>\r\n".encode(), b"DATA\r\n"):
                conn.sendall(line)
                answer = reader.readline()
                while answer[3:4] == b"-":
                    answer = reader.readline()
            assert answer.startswith(b"354")
            conn.sendall(body)  # only the smuggled part's own CRLF.CRLF ends DATA
            first = reader.readline()
            conn.sendall(b"QUIT\r\n")
            rest = reader.read()
        assert first.startswith(b"250"), first
        assert rest.startswith(b"221") and b"354" not in rest, rest  # no second DATA was ever opened
    forwards = sink.wait(BUSINESS, count=5, kind="forward")
    assert len(forwards) == 5
    assert all(b"erste Nachricht" in m["raw"] and b"second message" in m["raw"] for m in forwards)  # content
    assert not any(b"Subject: smuggled" in m["raw"].split(b"\r\n\r\n")[0] for m in forwards)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=relay.test"], check=True, capture_output=True)
    return cert, key


def test_starttls_on_the_inbound_port(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Path,
                                      tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    app, relay = start(f"sqlite:///{tmp_path}/r.db", app_factory, relay_factory, sink,
                       inbound={"tls_cert": str(cert), "tls_key": str(key), "require_starttls": True})
    opened = new_case(app)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        code, text = s.mail(REVIEWER)
        assert (code, text.decode()[:5]) == (530, "5.7.0")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        s.starttls(context=context)
        assert isinstance(s.sock, ssl.SSLSocket) and s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.ehlo("client.example")
        s.mail(REVIEWER)
        s.rcpt(opened.reviewer_address)
        code, _ = s.data(reviewer_mail("über TLS"))
        assert code == 250
    assert len(sink.wait(BUSINESS, kind="forward")) == 1
