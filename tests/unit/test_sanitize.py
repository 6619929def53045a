"""The forward a party's message becomes: allowlisted headers, the sender's address replaced in
every text part and encoding, attachments intact, anything unsafe refused."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import datetime
from email.message import EmailMessage

import pytest

from relay.core import redact, sanitize
from tests.helpers.views import assert_no_leak

REVIEWER = "max.mueller@example.de"
ALIAS = "b" * 32 + "@relay.test"


def route(**changes: object) -> sanitize.Route:
    base = dict(hidden=(REVIEWER,), alias=ALIAS, sender_name="Max M.", platform_name="ReviewHub",
                recipient="service@shop.example", message_id="<new1@relay.test>",
                date=datetime(2026, 3, 2, 12, 0), in_reply_to=["<notice@relay.test>"],
                references=["<notice@relay.test>"])
    base.update(changes)
    return sanitize.Route(**base)  # type: ignore[arg-type]






def reply_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Maximilian Mueller <{REVIEWER}>"
    msg["To"] = "a" * 32 + "@relay.test"
    msg["Cc"] = "Freundin <friend@example.org>"
    msg["Subject"] = f"Re: Ihre Anfrage – von {REVIEWER}"
    msg["Message-ID"] = f"<1234.{REVIEWER}>"
    msg["In-Reply-To"] = "<notice@relay.test>"
    msg["Received"] = f"from pc (dsl.example.de [192.0.2.7]) by mx.example.de for <{REVIEWER}>"
    msg["X-Mailer"] = "Thunderbird 115"
    msg["Return-Path"] = f"<{REVIEWER}>"
    msg["Disposition-Notification-To"] = REVIEWER
    msg["DKIM-Signature"] = "v=1; a=rsa-sha256; d=example.de; s=sel; b=abc"
    msg.set_content(f"Hallo,\n\nmeine Bestellnummer ist BE-48213.\nSchreiben Sie mir an {REVIEWER.upper()}\n"
                    "oder mailto:max.mueller%40example.de\n" + "Lange Zeile " * 200 + "\n",
                    charset="utf-8")
    msg.add_alternative(f'<p>Bestellnummer <b>BE-48213</b>, <a href="mailto:max.mueller&#64;example.de">'
                        f'mail</a> <!-- {REVIEWER} --> <img alt="{REVIEWER}" src="cid:x"></p>',
                        subtype="html")
    msg.add_attachment(b"%PDF-1.4 invoice bytes \x00\xff\x10", maintype="application", subtype="pdf",
                       filename="Rechnung.pdf")
    return msg


def test_reply_is_forwarded_without_the_address_and_with_the_words() -> None:
    original = reply_message()
    raw = original.as_bytes()
    out = sanitize.forward(sanitize.parse(raw), route())
    assert_no_leak(out)
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed["From"].addresses[0].addr_spec == ALIAS
    assert parsed["From"].addresses[0].display_name == "Max M. via ReviewHub"
    assert str(parsed["Reply-To"]) == ALIAS
    assert str(parsed["To"]) == "service@shop.example"
    assert parsed["Message-ID"] == "<new1@relay.test>"
    assert parsed["In-Reply-To"] == "<notice@relay.test>"
    for gone in ("Cc", "Received", "X-Mailer", "Return-Path", "Disposition-Notification-To", "DKIM-Signature"):
        assert gone not in parsed, gone
    assert "Maximilian" not in out.decode("latin-1")
    assert parsed["Subject"].startswith("Re: Ihre Anfrage – von ")
    text = parsed.get_body(("plain",)).get_content()
    assert "BE-48213" in text and ALIAS in text and "Lange Zeile " * 50 in text
    assert "BE-48213" in parsed.get_body(("html",)).get_content()
    attachment = next(parsed.iter_attachments())
    assert attachment.get_content() == b"%PDF-1.4 invoice bytes \x00\xff\x10"
    assert attachment.get_filename() == "Rechnung.pdf"
    assert b"\r\n" in out and b"\n" not in out.replace(b"\r\n", b"")
    assert max(len(line) for line in out.split(b"\r\n")) <= 998


def test_untouched_parts_keep_their_bytes() -> None:
    msg = EmailMessage()
    msg["From"] = REVIEWER
    msg["Subject"] = "Hallo"
    msg.set_content("Grüße aus Köln, Bestellung 4711", charset="iso-8859-1")
    out = sanitize.forward(sanitize.parse(msg.as_bytes()), route())
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed.get_content_charset() == "iso-8859-1"
    assert parsed.get_content().replace("\r\n", "\n") == "Grüße aus Köln, Bestellung 4711\n"


def test_quoted_printable_and_base64_bodies_are_cleaned() -> None:
    body = f"Antwort von {REVIEWER}\n".encode()
    for cte, encoded in (("base64", base64.b64encode(body)),
                         ("quoted-printable", b"Antwort von max.muel=\nler=40example.de\n")):
        raw = (b"From: " + REVIEWER.encode() + b"\nSubject: x\nMIME-Version: 1.0\n"
               b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: " + cte.encode()
               + b"\n\n" + encoded + b"\n")
        out = sanitize.forward(sanitize.parse(raw), route())
        assert_no_leak(out)
        assert "Antwort von" in email.message_from_bytes(out, policy=email.policy.default).get_content()


def test_nested_message_headers_are_stripped_too() -> None:
    inner = EmailMessage()
    inner["From"] = f"Max <{REVIEWER}>"
    inner["Subject"] = "Bestellbestätigung"
    inner.set_content("Ihre Bestellung BE-48213")
    outer = EmailMessage()
    outer["From"] = REVIEWER
    outer["Subject"] = "Fwd"
    outer.set_content("Siehe Anhang")
    outer.add_attachment(inner)
    out = sanitize.forward(sanitize.parse(outer.as_bytes()), route())
    assert_no_leak(out)
    assert "BE-48213" in out.decode("latin-1")


def test_an_address_that_cannot_be_removed_refuses_the_message() -> None:
    msg = EmailMessage()
    msg["From"] = REVIEWER
    msg["Subject"] = "x"
    msg.set_content("see attachment")
    msg.add_attachment(f"%PDF-1.4\n1 0 obj << /Author ({REVIEWER}) >>\n".encode(), maintype="application",
                       subtype="pdf", filename="invoice.pdf")
    with pytest.raises(sanitize.Unprocessable):
        sanitize.forward(sanitize.parse(msg.as_bytes()), route())


def _large_attachment_message(payload: bytes, linesep: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Max <{REVIEWER}>"
    msg["Subject"] = "Rechnung"
    msg.set_content(f"Anbei die Rechnung, {REVIEWER}")
    msg.add_attachment(payload, maintype="application", subtype="pdf", filename="rechnung.pdf")
    return msg.as_bytes(policy=email.policy.default.clone(linesep=linesep))


@pytest.mark.parametrize("linesep", ["\r\n", "\n"])
def test_large_attachments_are_written_exactly_as_the_generator_writes_them(
        linesep: str, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes(range(256)) * 4096  # 1 MB, over the pass-through size
    raw = _large_attachment_message(payload, linesep)
    passed = sanitize.forward(sanitize.parse(raw), route())
    monkeypatch.setattr(sanitize, "PASS_THROUGH_CHARS", 10**9)  # everything through the generator
    generated = sanitize.forward(sanitize.parse(raw), route())
    assert passed == generated
    attachment = next(email.message_from_bytes(passed, policy=email.policy.default).iter_attachments())
    assert attachment.get_content() == payload
    assert_no_leak(passed)


@pytest.mark.parametrize("hidden", [REVIEWER.encode(), REVIEWER.upper().encode(), REVIEWER.encode("utf-16-le"),
                                    REVIEWER.replace("@", "%40").encode()],
                         ids=["plain", "upper-case", "utf-16", "url-encoded"])
def test_a_large_attachment_with_the_address_is_still_refused(hidden: bytes) -> None:
    payload = b"%PDF-1.7\n" + bytes(range(256)) * 2048 + b"/Author (" + hidden + b")" + bytes(range(256)) * 2048
    with pytest.raises(sanitize.Unprocessable):
        sanitize.forward(sanitize.parse(_large_attachment_message(payload, "\r\n")), route())


@pytest.mark.parametrize("form", [
    "max.mueller@example.de", "MAX.Mueller@EXAMPLE.de", "max.mueller%40example.de",
    "max%2Emueller%40example%2Ede", "max.mueller&#64;example.de", "max.mueller&#x40;example.de",
    "max&period;mueller&commat;example&#46;de", "xmax.mueller@example.dev",
])
def test_redaction_finds_encoded_forms(form: str) -> None:
    text = f"before {form} after"
    cleaned = redact.replace_address(text, REVIEWER, "ALIAS")
    assert "ALIAS" in cleaned and "before" in cleaned and "after" in cleaned
    assert not redact.contains_address(cleaned, REVIEWER)


def test_unparseable_headers_do_not_crash() -> None:
    raw = (b"From: =?bogus?Q?x?= <" + REVIEWER.encode() + b">\r\nSubject: =?utf-8?B?####?=\r\n"
           b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nHallo " + REVIEWER.encode() + b"\r\n")
    out = sanitize.forward(sanitize.parse(raw), route())
    assert_no_leak(out)
    assert "Hallo" in out.decode("latin-1")


def test_note_is_added_when_the_root_was_not_mixed() -> None:
    msg = EmailMessage()
    msg["From"] = REVIEWER
    msg["Subject"] = "Termin"
    msg.set_content("Termin anbei")
    msg.add_alternative("<p>Termin anbei</p>", subtype="html")
    msg.make_mixed()
    msg.set_type("multipart/related")  # an unusual root: the note must still be added
    msg.attach(_calendar())
    out = sanitize.forward(sanitize.parse(msg.as_bytes()), route())
    again = sanitize.forward(sanitize.parse(msg.as_bytes()), route())
    assert out == again  # reproducible
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    assert "attachments (calendar)" in out.decode() and "VCALENDAR" not in out.decode()


def _calendar() -> EmailMessage:
    part = EmailMessage()
    part.set_content(f"BEGIN:VCALENDAR\nORGANIZER:mailto:{REVIEWER}\nEND:VCALENDAR\n", subtype="calendar")
    del part["MIME-Version"]
    return part


def test_encrypted_mail_is_refused() -> None:
    raw = (f"From: {REVIEWER}\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; "
           "protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
           "Version: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n--b--\r\n").encode()
    with pytest.raises(sanitize.Unprocessable, match="encrypted"):
        sanitize.forward(sanitize.parse(raw), route())
