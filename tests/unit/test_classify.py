"""Classification of automatic replies, bounces and loops, and reading bounce reports (pure)."""

from __future__ import annotations

from collections import Counter
from email.message import EmailMessage

import pytest

from relay.core import bounces, classify, headers, limits, sanitize
from relay.core.outcomes import Outcome
from tests.helpers.corpus import CORPUS, SKIP_REASON, messages
from tests.helpers.reports import dsn

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
    {"Precedence": "auto_reply"},
])
def test_auto_reply_headers(headers: dict[str, str]) -> None:
    assert classify.classify(message(**headers), "max@example.de", DOMAIN)[0] is classify.Kind.AUTO_REPLY


@pytest.mark.parametrize("value", ["All", "DR, RN, NRN, OOF, AutoReply", "OOF"])
def test_x_auto_response_suppress_alone_marks_a_person(value: str) -> None:
    # Outlook and Exchange Online put it on ordinary replies: it asks others not to auto-reply
    msg = message("AW: Ihre Anfrage", X_Auto_Response_Suppress=value, Thread_Index="AQHcqQ==", X_MS_Has_Attach="")
    assert classify.classify(msg, "max@example.de", DOMAIN) == (classify.Kind.PERSON, "")


def test_x_auto_response_suppress_does_not_hide_a_real_auto_reply() -> None:
    msg = message("Automatische Antwort: AW: Ihre Anfrage", X_Auto_Response_Suppress="All")
    assert classify.classify(msg, "max@example.de", DOMAIN) == (classify.Kind.AUTO_REPLY, "out-of-office subject")


@pytest.mark.parametrize("subject", [
    "Abwesenheitsnotiz: Ihre Anfrage", "Automatische Antwort: Re: Ihre Anfrage", "Out of Office: Re: question",
    "Out of Office AutoReply: Re: question", "Out of the office: Re: question",
    "Automatic reply: your question", "Réponse automatique : Re: demande", "Respuesta automática: Re: pregunta",
    "Risposta automatica: Re: domanda", "Automatisch antwoord: Re: vraag", "Fuera de la oficina", "Afwezig",
    "Afwezig: Re: vraag", "AutoReply: Re", "Auto-Reply: Re", "Autoreply: Re: Ihre Anfrage", "Auto Reply: Re",
    "Out of Office", "out of office", "Abwesenheitsnotiz", "Automatic reply", "  Automatische Antwort : AW: x",
    "[Auto-Reply] Re: Ihre Anfrage", "[Out of Office] Re: question", "[Abwesenheitsnotiz] AW: Anfrage",
    "[Automatic reply: Re: question]", "Reponse automatique: Re: demande", "Absent du bureau: Re: demande",
    "Fuori ufficio: Re: domanda", "Fuori sede", "Automatische Rückantwort: Ihre Anfrage",
])
def test_out_of_office_subjects_in_six_languages(subject: str) -> None:
    assert classify.classify(message(subject), "max@example.de", DOMAIN) == (classify.Kind.AUTO_REPLY,
                                                                                "out-of-office subject")


@pytest.mark.parametrize("subject", ["Re: Ihre Anfrage", "Re: Bestellung 4711", "Re: your question about the office chair",
                                     "AW: Rechnung"])
def test_people_are_people(subject: str) -> None:
    assert classify.classify(message(subject, Auto_Submitted="no"), "max@example.de", DOMAIN)[0] is classify.Kind.PERSON


@pytest.mark.parametrize("subject", [
    # the words of an out-of-office reply, written by a person, anywhere but as the reply's prefix
    "Ihr Mietwagen im Urlaub", "Re: ich war im Urlaub", "Re: Out of office hours delivery?",
    "Re: Ihre Anfrage – ich bin nicht im Büro gewesen", "Re: Automatic reply: your question",
    "AW: Abwesenheitsnotiz: Ihre Anfrage", "Out of office hours delivery", "Automatic replying is annoying",
    "Autoreplies: how to stop them", "Re: [Auto-Reply] question", "Re: respuesta automática", "Afwezigheidsregeling?",
    "Fuera de la oficina hoy, te escribo desde casa", "I was on vacation", "Vacation photos",
    "Je suis absent, désolé du retard", "Ich bin derzeit nicht im Büro, antworte trotzdem",
])
def test_people_writing_about_absence_are_people(subject: str) -> None:
    assert classify.classify(message(subject), "max@example.de", DOMAIN) == (classify.Kind.PERSON, "")


def report(report_type: str, second: str) -> EmailMessage:
    raw = ("From: Max Mustermann <max@example.de>\r\nSubject: Gelesen: Ihre Anfrage\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type={report_type}; boundary=B\r\n\r\n"
           "--B\r\nContent-Type: text/plain\r\n\r\nIhre Nachricht wurde gelesen.\r\n"
           f"--B\r\nContent-Type: {second}\r\n\r\nReporting-UA: pc.example.de; Outlook\r\n"
           "Final-Recipient: rfc822; max@example.de\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n"
           "\r\n--B--\r\n")
    return sanitize.parse(raw.encode())


@pytest.mark.parametrize("envelope", ["max@example.de", ""])
def test_read_receipts_are_automatic(envelope: str) -> None:
    msg = report("disposition-notification", "message/disposition-notification")
    assert classify.classify(msg, envelope, DOMAIN) == (
        classify.Kind.AUTO_REPLY, "multipart/report; report-type=disposition-notification")
    quoted = report('"Disposition-Notification"', "message/disposition-notification")
    assert classify.classify(quoted, envelope, DOMAIN)[0] is classify.Kind.AUTO_REPLY


def test_abuse_feedback_reports_are_automatic() -> None:
    msg = report("feedback-report", "message/feedback-report")
    assert classify.classify(msg, "", DOMAIN) == (classify.Kind.AUTO_REPLY, "multipart/report; report-type=feedback-report")


def test_delivery_status_reports_stay_bounces() -> None:
    msg = sanitize.parse(dsn("failed", "5.1.1"))
    assert classify.classify(msg, "", DOMAIN) == (classify.Kind.BOUNCE, "multipart/report; report-type=delivery-status")


def test_an_unknown_report_type_never_reaches_the_clue() -> None:
    msg = report('"max@example.de"', "message/whatever")
    assert classify.classify(msg, "max@example.de", DOMAIN) == (classify.Kind.PERSON, "")


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


FOLDERS = ("replies", "quote-bodies", "mime", "attachments", "charsets", "malformed", "autoreplies", "bounces")


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_corpus_people_are_people_and_auto_replies_are_automatic(capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    kinds: dict[str, classify.Kind] = {}
    for name, raw in messages():
        folder = name.split("/")[0]
        if folder not in FOLDERS:
            continue
        msg = sanitize.parse(raw)
        # the envelope sender as the receiving server recorded it, where it did
        return_path = msg.get("Return-Path")
        envelope = str(return_path).strip().strip("<>") if return_path is not None else "sender@example.org"
        kind, clue = classify.classify(msg, envelope, DOMAIN)
        assert "@" not in clue, name  # clues reach the logs
        counts[folder, kind.value] += 1
        kinds[name] = kind
    with capsys.disabled():
        print("\nclassified corpus messages:")
        for (folder, kind), count in sorted(counts.items()):
            print(f"  {folder:14} {kind:11} {count}")
    assert {folder for folder, _ in counts} == set(FOLDERS)
    people = [n for n, k in kinds.items() if n.startswith(("replies/", "quote-bodies/")) and k is not classify.Kind.PERSON]
    assert people == []
    auto = [n for n, k in kinds.items() if n.startswith("autoreplies/")]
    assert auto and all(kinds[n] is classify.Kind.AUTO_REPLY for n in auto)
    assert kinds["mime/flanker-disposition-notification.eml"] is classify.Kind.AUTO_REPLY


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
