"""Classification of automatic replies, bounces and loops, and reading bounce reports (pure)."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from relay import bounces, classify, headers, limits, sanitize
from relay.outcomes import Outcome

from .corpus import CORPUS, SKIP_REASON

DOMAIN = "relay.test"


def message(subject: str = "Re: Ihre Anfrage", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "max@example.de"
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hallo")
    return msg


@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-replied"}, {"Auto_Submitted": "auto-generated"}, {"X_Autoreply": "yes"},
    {"X_Autorespond": "Out of office"}, {"Precedence": "bulk"}, {"Precedence": "junk"}, {"Precedence": "list"},
    {"Precedence": "auto_reply"}, {"X_Auto_Response_Suppress": "All"},
])
def test_auto_reply_headers(headers: dict[str, str]) -> None:
    assert classify.classify(message(**headers), "max@example.de", DOMAIN)[0] is classify.Kind.AUTO_REPLY


@pytest.mark.parametrize("subject", [
    "Abwesenheitsnotiz: Ihre Anfrage", "Automatische Antwort: Re: Ihre Anfrage", "Out of Office: Re: question",
    "Automatic reply: your question", "Réponse automatique : Re: demande", "Respuesta automática: Re: pregunta",
    "Risposta automatica: Re: domanda", "Automatisch antwoord: Re: vraag", "Fuera de la oficina", "Afwezig",
    "AutoReply: Re", "Auto-Reply: Re",
])
def test_out_of_office_subjects_in_six_languages(subject: str) -> None:
    assert classify.classify(message(subject), "max@example.de", DOMAIN)[0] is classify.Kind.AUTO_REPLY


@pytest.mark.parametrize("subject", ["Re: Ihre Anfrage", "Re: Bestellung 4711", "Re: your question about the office chair",
                                     "AW: Rechnung"])
def test_people_are_people(subject: str) -> None:
    assert classify.classify(message(subject, Auto_Submitted="no"), "max@example.de", DOMAIN)[0] is classify.Kind.PERSON


def test_auto_submitted_parameters_never_reach_the_clue() -> None:
    msg = message(Auto_Submitted='auto-replied; owner-email="max@example.de"')
    kind, clue = classify.classify(msg, "max@example.de", DOMAIN)
    assert kind is classify.Kind.AUTO_REPLY and clue == "Auto-Submitted: auto-replied"


def test_a_from_header_the_parser_chokes_on_is_read_raw() -> None:
    # found by the fuzz test: the standard header parser raises AttributeError on this From
    raw = (b"Return-Path: <>\nFrom:Content-Type: multipart/mixed; Mail Delivery System <daemon@example.jp>\n"
           b"Subject: Mail delivery failed\n\nThis message was created automatically.\n")
    msg = sanitize.parse(raw)
    # with the null sender, From is read to tell a mailer daemon's message from a person's
    assert classify.classify(msg, "", DOMAIN)[0] is classify.Kind.PERSON
    assert classify.classify(msg, "max@example.de", DOMAIN)[0] is classify.Kind.PERSON
    assert headers.addresses(msg, "From") == []


def test_loops() -> None:
    assert classify.classify(message(X_Relay_Loop=DOMAIN), "max@example.de", DOMAIN)[0] is classify.Kind.LOOP
    assert classify.classify(message(X_Relay_Loop="other.example"), "max@example.de", DOMAIN)[0] is classify.Kind.PERSON
    many = message()
    for n in range(31):
        many["Received"] = f"from hop{n}.example by hop{n + 1}.example"
    assert classify.classify(many, "max@example.de", DOMAIN)[0] is classify.Kind.LOOP
    del many["Received"]
    for n in range(30):
        many["Received"] = f"from hop{n}.example"
    assert classify.classify(many, "max@example.de", DOMAIN)[0] is classify.Kind.PERSON


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_corpus_auto_replies_and_bounces_are_recognised() -> None:
    for path in sorted((CORPUS / "autoreplies").glob("*.eml")):
        msg = sanitize.parse(path.read_bytes())
        assert classify.classify(msg, "someone@example.org", DOMAIN)[0] is classify.Kind.AUTO_REPLY, path.name
    reports = [bounces.read(sanitize.parse(p.read_bytes())) for p in sorted((CORPUS / "bounces").glob("*.eml"))]
    permanent = [r for r in reports if r.permanent]
    assert len(permanent) > 0.7 * len(reports)
    assert all(r.status[0] in "45" and r.status.count(".") == 2 for r in permanent)
    assert sum(r.status == "5.1.1" for r in permanent) > 20  # the classic "no such user"


def dsn(action: str, status: str) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.de\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nmax@example.de: user unknown\r\n"
            b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.de\r\n\r\n"
            b"Final-Recipient: rfc822; max@example.de\r\nAction: " + action.encode() + b"\r\nStatus: "
            + status.encode() + b"\r\n\r\n--B--\r\n")


def test_reading_delivery_status_notifications() -> None:
    failed = bounces.read(sanitize.parse(dsn("failed", "5.1.1")))
    assert (failed.permanent, failed.status) == (True, "5.1.1") and "max@" not in failed.detail
    delayed = bounces.read(sanitize.parse(dsn("delayed", "4.4.1")))
    assert (delayed.permanent, delayed.status) == (False, "4.4.1")
    assert bounces.read(message()).permanent is None


def test_shape_limits() -> None:
    shape = limits.Shape(max_line_bytes=100, max_header_count=5, max_header_bytes=300)
    assert limits.check_shape(b"Subject: x\r\n\r\nshort\r\n", shape) is None
    assert limits.check_shape(b"Subject: x\n\n" + b"y" * 101 + b"\n", shape) is Outcome.LINE_TOO_LONG
    assert limits.check_shape(b"".join(b"X-H%d: v\r\n" % n for n in range(6)) + b"\r\nbody", shape) \
        is Outcome.HEADER_TOO_LARGE
    folded = b"Subject: x\r\n" + b"".join(b" continued %d\r\n" % n for n in range(30)) + b"\r\nbody"
    assert limits.check_shape(folded, shape) is Outcome.HEADER_TOO_LARGE  # 300 bytes of header
    probes = limits.ProbeCounter(limit=2)
    from datetime import datetime, timedelta
    start = datetime(2026, 1, 1)
    assert not probes.add("192.0.2.1", start) and not probes.add("192.0.2.1", start)
    assert probes.add("192.0.2.1", start) and probes.blocked("192.0.2.1", start)
    assert not probes.blocked("192.0.2.2", start)
    assert not probes.blocked("192.0.2.1", start + timedelta(hours=2))
