"""Internationalised addresses over real SMTP, on SQLite and PostgreSQL: a reviewer whose domain is
`bücher.example` answers with SMTPUTF8 and a UTF-8 From header, in either spelling of the domain;
the answer is accepted and forwarded without either spelling. And whatever the headers' bytes and
charsets, reading a message never ends in "try again later" (451): what cannot be read is refused
at once with 554 5.6.0."""

from __future__ import annotations

import email
import email.policy
import smtplib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.core.outcomes import Outcome
from relay.inbound import intake
from tests.helpers import leak_reader
from tests.helpers.environment import Sink, new_case

UNICODE, ASCII = "anna@bücher.example", "anna@xn--bcher-kva.example"


def send_utf8(port: int, mail_from: str, rcpt: str, raw: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        assert client.has_extn("smtputf8")
        code, text = client.mail(mail_from, ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        try:
            code, text = client.data(raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode(errors="replace")
        return code, text.decode(errors="replace")


@pytest.mark.parametrize(("registered", "envelope", "header"), [
    (UNICODE, UNICODE, UNICODE), (UNICODE, ASCII, UNICODE), (ASCII, UNICODE, ASCII), (ASCII, "bounce@elsewhere.example",
                                                                                       UNICODE)],
    ids=["unicode", "ascii-envelope", "ascii-registered", "forwarding-service"])
def test_an_idn_reviewer_answers_in_either_spelling(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                                    registered: str, envelope: str, header: str) -> None:
    app = app_factory(db_url, outbound={"url": sink.url})
    relay = relay_factory(app)
    opened = new_case(app, reviewer=registered)
    assert sink.wait(ASCII), "the contact request goes to the ASCII spelling every server can deliver to"
    raw = (f"From: Anna Bücher <{header}>\r\nTo: {opened.reviewer_address}\r\nSubject: Re: Anfrage zu Ihrer "
           f"Bewertung\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
           f"8bit\r\n\r\nBestellnummer BE-51877. Schreiben Sie an {UNICODE} oder {ASCII}.\r\nGrüße, Anna\r\n").encode()
    code, text = send_utf8(relay.port, envelope, opened.reviewer_address, raw)
    assert code == 250, text
    forward = sink.wait("service@shop.example", kind="forward")
    assert len(forward) == 1
    out = forward[0]["raw"]
    assert leak_reader.finds(out, UNICODE) == [] and leak_reader.finds(out, ASCII) == []
    text = email.message_from_bytes(out, policy=email.policy.default).get_content()
    assert "BE-51877" in text and "Grüße, Anna" in text and opened.business_address in text


def test_someone_else_with_a_look_alike_domain_is_refused(db_url: str, app_factory: Any, relay_factory: Any,
                                                           sink: Sink) -> None:
    app = app_factory(db_url, outbound={"url": sink.url})
    relay = relay_factory(app)
    opened = new_case(app, reviewer=UNICODE)
    raw = b"From: <anna@bucher.example>\r\nSubject: Re\r\n\r\nBE-51877\r\n"
    code, text = send_utf8(relay.port, "anna@bucher.example", opened.reviewer_address, raw)
    assert (code, text.split()[0]) == (550, "5.7.1")


# --- no 451 from reading -------------------------------------------------------------------------

CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "utf-7", "shift_jis", "iso-2022-jp", "utf-16", "x-unknown",
            "koi8-r", "gb2312", "", "utf-8\"; x=\"", "us-ascii"]
HEADER_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def utf8_messages(draw: st.DrawFn, sender: str) -> bytes:
    """Messages as SMTPUTF8 clients (and broken ones) write them: raw UTF-8 and stray 8-bit bytes
    in headers, encoded words in odd charsets, the sender in either spelling, odd charsets and
    transfer encodings in the body."""
    name = draw(HEADER_TEXT).replace("\r", " ").replace("\n", " ")
    spelled = draw(st.sampled_from([sender, ASCII, UNICODE.upper(), f"\"{name}\" <{sender}>"]))
    charset = draw(st.sampled_from(CHARSETS))
    subject = draw(HEADER_TEXT).replace("\r", " ").replace("\n", " ")
    encoded_word = f"=?{draw(st.sampled_from(CHARSETS)) or 'x'}?{draw(st.sampled_from('BQbq'))}?{subject}?="
    cte = draw(st.sampled_from(["8bit", "base64", "quoted-printable", "7bit", "binary", "x-uuencode"]))
    body = draw(st.binary(max_size=300)) + f" BE-51877 {sender} ".encode() + draw(HEADER_TEXT).encode()
    head = (f"From: {name} <{sender}>\r\nReply-To: {spelled}\r\nSubject: {draw(st.sampled_from([subject, encoded_word]))}"
            f"\r\nMIME-Version: 1.0\r\nContent-Type: text/{draw(st.sampled_from(['plain', 'html']))}; "
            f"charset=\"{charset}\"; name=\"{name}\"\r\nContent-Transfer-Encoding: {cte}\r\n")
    stray = draw(st.binary(max_size=20)).replace(b"\r", b"").replace(b"\n", b"")
    return head.encode("utf-8") + b"X-Stray: " + stray + b"\r\n\r\n" + body


def test_reading_never_answers_try_again_later(app_factory: Any, tmp_path: Path) -> None:
    app = app_factory(f"sqlite:///{tmp_path}/relay.db", limits={"messages_per_case_per_hour": 10**6})
    opened = new_case(app, reviewer=UNICODE)
    conversation = intake.lookup(app, opened.reviewer_address.split("@")[0])
    assert conversation is not None
    seen: set[Outcome] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(data=st.data())
    def one_message(data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from([UNICODE, ASCII]))
        raw = data.draw(utf8_messages(sender))
        result = intake.process(app, conversation, sender, raw)
        assert result.outcome is not Outcome.TEMPORARY_FAILURE, result.detail
        assert result.outcome in (Outcome.ACCEPTED, Outcome.UNPROCESSABLE, Outcome.AUTO_REPLY_DROPPED), result
        seen.add(result.outcome)

    one_message()
    assert Outcome.ACCEPTED in seen  # the generator reaches the sanitiser, not only early refusals
