"""The ways a sender's address hides from a text search, one class each, in both directions: what
the relay does with each (cleaned, dropped with the note, refused), judged by the tests' own leak
reader (tests/leak_reader.py), which shares nothing with the relay's scanner."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import io
import quopri
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage

import pytest
from asn1crypto import cms

from relay.core import notices, sanitize
from tests.helpers import leak_reader
from tests.helpers.environment import REPO

TEMPLATES = REPO / "templates"
REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"
REVIEWER_SIDE, BUSINESS_SIDE = "k" * 32 + "@relay.test", "b" * 32 + "@relay.test"
WORDS = "Bestellnummer BE-48213"

Build = Callable[[str], bytes]  # the sender's address -> the message as sent


def route(sender: str) -> sanitize.Route:
    """Reviewer -> business (no remote content blocked) or business -> reviewer (blocked)."""
    to_business = sender != BUSINESS
    return sanitize.Route(hidden=(sender,), alias=BUSINESS_SIDE if to_business else REVIEWER_SIDE,
                          sender_name="Max M." if to_business else "Beispiel Shop GmbH", platform_name="ReviewHub",
                          recipient=BUSINESS if to_business else REVIEWER, message_id="<hidden@relay.test>",
                          date=datetime(2026, 3, 2, 12, 0), block_remote=not to_business,
                          note=lambda removed: notices.removed_attachments(TEMPLATES, "en", removed))


def forward(raw: bytes, sender: str) -> bytes:
    return sanitize.forward(sanitize.parse(raw), route(sender))


def texts(raw: bytes) -> str:
    return "\n".join(leak_reader.views(raw))


def base(sender: str, body: str = f"{WORDS}, viele Grüße", subtype: str = "plain") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Absender <{sender}>"
    msg["To"] = REVIEWER_SIDE
    msg["Subject"] = "Re: Ihre Anfrage"
    msg.set_content(body, subtype=subtype)
    return msg


def inner_message(sender: str) -> bytes:
    inner = base(sender, f"Kunde {sender}, Bestellung BE-48213 vom 8. Februar")
    inner.replace_header("Subject", "Bestellbestätigung")
    return inner.as_bytes(policy=email.policy.SMTP)


def attach_raw(sender: str, headers: str, body: bytes) -> bytes:
    """A reply with a text and one more part written as given (encodings the stdlib would not write)."""
    head = (f"From: Absender <{sender}>\r\nTo: {REVIEWER_SIDE}\r\nSubject: Re: Ihre Anfrage\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{WORDS}, siehe Anhang\r\n--outer\r\n")
    return head.encode() + headers.encode() + b"\r\n\r\n" + body + b"\r\n--outer--\r\n"


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


# --- what each class looks like as sent -----------------------------------------------------------

ENCODED_MESSAGES: dict[str, Build] = {
    "rfc822 as base64": lambda s: attach_raw(s, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64",
                                             b64(inner_message(s))),
    "rfc822 as quoted-printable": lambda s: attach_raw(
        s, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable",
        quopri.encodestring(inner_message(s)).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")),
    "message/global as base64": lambda s: attach_raw(
        s, "Content-Type: message/global\r\nContent-Transfer-Encoding: base64", b64(inner_message(s))),
    "a digest's part as base64": lambda s: attach_raw(
        s, "Content-Type: multipart/digest; boundary=dg", b"--dg\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64(inner_message(s)) + b"--dg--\r\n"),
    "disposition report as base64": lambda s: attach_raw(
        s, "Content-Type: message/disposition-notification\r\nContent-Transfer-Encoding: base64",
        b64(f"Reporting-UA: mail.example.de\r\nFinal-Recipient: rfc822; {s}\r\nDisposition: manual-action/"
            "MDN-sent-manually; displayed\r\n".encode())),
}


def _wide(text: str, codec: str, mark: bytes = b"") -> Callable[[str], bytes]:
    return lambda sender: attach_raw(
        sender, "Content-Type: text/plain; name=Bestellung.txt\r\nContent-Disposition: attachment; "
        "filename=Bestellung.txt\r\nContent-Transfer-Encoding: base64",
        b64(mark + text.replace("ADDRESS", sender).encode(codec)))


WIDE_TEXT: dict[str, Build] = {
    "UTF-16LE with a byte-order mark, no charset": _wide(f"{WORDS}\r\nE-Mail: ADDRESS\r\n", "utf-16-le", b"\xff\xfe"),
    "UTF-16BE with a byte-order mark, no charset": _wide(f"{WORDS}\r\nE-Mail: ADDRESS\r\n", "utf-16-be", b"\xfe\xff"),
    "UTF-32LE with a byte-order mark, no charset": _wide(f"{WORDS}\r\nE-Mail: ADDRESS\r\n", "utf-32-le",
                                                         b"\xff\xfe\x00\x00"),
    "UTF-16LE without a mark, no charset": _wide(f"{WORDS}\r\nE-Mail: ADDRESS\r\n", "utf-16-le"),
}


def _html(template: str) -> Build:
    def build(sender: str) -> bytes:
        local, domain = sender.split("@")
        msg = base(sender, f"{WORDS}\nsiehe HTML")
        msg.add_alternative(f"<p>{WORDS}</p><p>{template.format(local=local, domain=domain)}</p>", subtype="html")
        return msg.as_bytes(policy=email.policy.SMTP)
    return build


MARKUP: dict[str, Build] = {
    "<wbr>": _html("Kontakt: {local}<wbr>@{domain}"),
    "<span> around @": _html("Kontakt: {local}<span style='color:#333'>@</span>{domain}"),
    "an element across the address": _html("Kontakt: <b>{local}@</b><i>{domain}</i> gern"),
    "a comment inside": _html("Kontakt: {local}<!-- signature -->@{domain}"),
    "&shy;": _html("Kontakt: {local}&shy;@{domain}"),
    "zero-width characters": _html("Kontakt: {local}\u200b@\u200c{domain}\u2060\ufeff"),
    "zero-width in plain text": lambda s: base(s, f"{WORDS}\nKontakt: " + s.replace("@", "\u200d@")).as_bytes(
        policy=email.policy.SMTP),
    "an empty comment <!-->": _html("Kontakt: {local}<!-->@{domain}<!-- -->"),
    "'>' inside a quoted attribute": _html("Kontakt: {local}<span title='a -> b'>@</span>{domain}"),
    "a hidden element inside": _html("Kontakt: {local}@<span style='display:none'>x</span>{domain}"),
    "a CSS escape": _html("<style>p::after{{content:'{local}\\40 {domain}'}}</style>Kontakt"),
    "a line break inside a link": _html("<a href='mailto:{local}@\n{domain}'>mail</a> "
                                        "<a href='mailto:{local}&#10;@{domain}'>x</a>"),
    "bidi isolates and tag characters": lambda s: base(
        s, f"{WORDS}\n" + s.replace("@", "\u2066@\u2069").replace(".", "\U000e0041.")).as_bytes(policy=email.policy.SMTP),
    "small and fullwidth forms": lambda s: base(
        s, f"{WORDS}\n" + s.replace("@", "\ufe6b").replace(".", "\uff0e")).as_bytes(policy=email.policy.SMTP),
}


def _typed(subtype: str, template: str) -> Build:
    def build(sender: str) -> bytes:
        local, domain = sender.split("@")
        msg = base(sender, f"{WORDS}\nsiehe unten")
        msg.add_alternative(f"<p>{WORDS}</p>" + template.format(local=local, domain=domain), subtype=subtype)
        return msg.as_bytes(policy=email.policy.SMTP)
    return build


MARKUP.update({
    "AMP markup inside": _typed("x-amp-html", "<p>{local}<b>@</b>{domain}</p>"),
    "text/enriched markup inside": _typed("enriched", "<bold>{local}</bold>@{domain}"),
})


def _link(template: str) -> Build:
    def build(sender: str) -> bytes:
        once = urllib.parse.quote(f"mailto:{sender}", safe="")
        value = template.format(once=once, twice=urllib.parse.quote(once, safe=""),
                                thrice=urllib.parse.quote(urllib.parse.quote(once, safe=""), safe=""),
                                pp=sender.replace("@", "-40").replace(".", "-2E"),
                                digits=once.replace("%40", "%25%34%30"))
        msg = base(sender, f"{WORDS}\nsiehe HTML")
        msg.add_alternative(f"<p>{WORDS}</p><p><a href=\"{value}\">Schreiben Sie mir</a></p>", subtype="html")
        return msg.as_bytes(policy=email.policy.SMTP)
    return build


def _vcard(sender: str) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Max Mueller\r\nEMAIL:{sender}\r\nEND:VCARD\r\n".encode()


def _uuencoded(name: str, data: bytes) -> str:
    lines = [binascii.b2a_uu(data[i:i + 45]).decode() for i in range(0, len(data), 45)]
    return f"begin 644 {name}\n" + "".join(lines) + "`\nend\n"


WRAPPED: dict[str, Build] = {
    "Safe Links, encoded twice": _link("https://eur01.safelinks.protection.outlook.com/?url={twice}&data=05"),
    "Google redirect, encoded three times": _link("https://www.google.com/url?q={thrice}&sa=D"),
    "Proofpoint v2": _link("https://urldefense.proofpoint.com/v2/url?u=mailto-3A{pp}&d=DwMF"),
    "data: URI with a vCard": lambda s: _link("data:text/vcard;base64," + base64.b64encode(_vcard(s)).decode())(s),
    "data: URI in CSS, percent-encoded": lambda s: _html(
        "<div style=\"background:url(data:text/plain," + urllib.parse.quote(f"von {s}") + ")\">Bild</div>")(s),
    "uuencoded vCard in the text": lambda s: base(s, f"{WORDS}\n\n{_uuencoded('max.vcf', _vcard(s))}").as_bytes(
        policy=email.policy.SMTP),
    "uuencoded file with the address": lambda s: base(
        s, f"{WORDS}\n\n{_uuencoded('notiz.txt', f'Kontakt {s}'.encode())}").as_bytes(policy=email.policy.SMTP),
    "each digit percent-encoded again": _link("https://t.example/?u={digits}"),
    "base64 of the address in a tracking link": lambda s: _link(
        "https://t.crm.example/e3t/Ctc/VW" + base64.urlsafe_b64encode(f'{{"from":"{s}"}}'.encode()).decode().rstrip("=")
        + "/x?k=1")(s),
}


def _armored(kind: str, sender: str) -> str:
    blob = base64.encodebytes(b"\x88\x75\x04\x01\x16\x08\x00\x1d\x16\x21\x04" + sender.encode() + b"\x00" * 40)
    return f"-----BEGIN PGP {kind}-----\n\n{blob.decode()}=Ab1c\n-----END PGP {kind}-----\n"


def _signed_data(content: bytes) -> bytes:
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "data", "content": content}, "signer_infos": []})}).dump()


def _opaque(sender: str) -> bytes:
    entity = (f"Content-Type: text/plain; charset=utf-8\r\n\r\n{WORDS}\r\n-- \r\nMax Mueller | {sender}\r\n").encode()
    raw = (f"From: Max <{sender}>\r\nTo: {REVIEWER_SIDE}\r\nSubject: Re: Anfrage\r\nMIME-Version: 1.0\r\n"
           "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    return raw + b64(_signed_data(entity))


SIGNATURES: dict[str, Build] = {
    "inline OpenPGP signature": lambda s: base(
        s, f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{WORDS}\n- -- \nMax\n{_armored('SIGNATURE', s)}"
    ).as_bytes(policy=email.policy.SMTP),
    "inline public key": lambda s: base(s, f"{WORDS}\nMein Schlüssel:\n{_armored('PUBLIC KEY BLOCK', s)}").as_bytes(
        policy=email.policy.SMTP),
    "opaque S/MIME signature": _opaque,
}

CLEANED = {**ENCODED_MESSAGES, **WIDE_TEXT, **MARKUP, **{k: v for k, v in WRAPPED.items() if "uuencoded" not in k
                                                         and "data:" not in k}}
DROPPED = {"data: URI with a vCard": "vcard", "data: URI in CSS, percent-encoded": "embedded",
           "uuencoded vCard in the text": "vcard", "uuencoded file with the address": "embedded",
           "inline OpenPGP signature": "signature", "inline public key": "pgp_key",
           "opaque S/MIME signature": "signature"}
EVERY = {**CLEANED, **WRAPPED, **SIGNATURES}
# cleaned without the alias taking the address's place: the address was in an encoding nobody reads
# (the text is rewritten as UTF-8) or in a link parameter that is removed
WITHOUT_ALIAS = {"UTF-16LE without a mark, no charset", "base64 of the address in a tracking link"}
DIRECTIONS = pytest.mark.parametrize("sender", [REVIEWER, BUSINESS], ids=["to-business", "to-reviewer"])


@DIRECTIONS
@pytest.mark.parametrize("name", sorted(EVERY))
def test_the_reader_sees_the_address_before_sanitising(name: str, sender: str) -> None:
    assert leak_reader.finds(EVERY[name](sender), sender), f"{name}: the test's own reader is blind to it"


@DIRECTIONS
@pytest.mark.parametrize("name", sorted(CLEANED))
def test_hidden_addresses_are_replaced_and_the_words_kept(name: str, sender: str) -> None:
    out = forward(EVERY[name](sender), sender)
    assert leak_reader.finds(out, sender) == []
    shown = texts(out)
    assert "be-48213" in shown, "the sender's words were lost"
    assert route(sender).alias in shown or name in ENCODED_MESSAGES or name in WITHOUT_ALIAS


@DIRECTIONS
@pytest.mark.parametrize("name", sorted(DROPPED))
def test_embedded_identities_are_dropped_with_the_note(name: str, sender: str) -> None:
    out = forward(EVERY[name](sender), sender)
    assert leak_reader.finds(out, sender) == []
    shown = texts(out)
    assert "be-48213" in shown, "the sender's words were lost"
    word = {"vcard": "a contact card", "embedded": "an embedded file", "signature": "a digital signature",
            "pgp_key": "a pgp key"}[DROPPED[name]]
    assert f"the relay removed {word}" in shown
    assert "begin pgp" not in shown and "begin:vcard" not in shown


def test_an_encoded_inner_message_is_decoded_and_cleaned() -> None:
    out = forward(ENCODED_MESSAGES["rfc822 as base64"](REVIEWER), REVIEWER)
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    inner = next(p for p in parsed.walk() if p.get_content_type() == "message/rfc822").get_payload()[0]
    assert inner["Subject"] == "Bestellbestätigung" and "From" not in inner
    assert "Kunde " + BUSINESS_SIDE in inner.get_body(("plain",)).get_content()


def test_utf16_text_is_forwarded_as_utf8() -> None:
    out = forward(WIDE_TEXT["UTF-16LE with a byte-order mark, no charset"](REVIEWER), REVIEWER)
    attachment = next(email.message_from_bytes(out, policy=email.policy.default).iter_attachments())
    assert attachment.get_content_charset() == "utf-8"
    assert attachment.get_content() == f"{WORDS}\r\nE-Mail: {BUSINESS_SIDE}\r\n"


def test_markup_around_a_hidden_address_stays_well_formed() -> None:
    out = forward(MARKUP["an element across the address"](REVIEWER), REVIEWER)
    html = email.message_from_bytes(out, policy=email.policy.default).get_body(("html",)).get_content()
    assert f"<b>{BUSINESS_SIDE}</b><i></i> gern" in html


def test_an_encrypted_smime_message_is_still_refused() -> None:
    enveloped = cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
        "version": "v0", "recipient_infos": [], "encrypted_content_info": {
            "content_type": "data", "content_encryption_algorithm": {"algorithm": "aes256_cbc",
                                                                     "parameters": b"\x00" * 16}}})}).dump()
    raw = _opaque(REVIEWER).split(b"\r\n\r\n")[0].replace(b"signed-data", b"enveloped-data") + b"\r\n\r\n" + b64(enveloped)
    with pytest.raises(sanitize.Unprocessable, match="encrypted"):
        forward(raw, REVIEWER)


def test_a_certificate_bundle_is_dropped() -> None:
    raw = attach_raw(REVIEWER, "Content-Type: application/pkcs7-mime; smime-type=certs-only; name=certs.p7c\r\n"
                     "Content-Transfer-Encoding: base64", b64(_signed_data(b"")))
    assert "the relay removed a digital signature" in texts(forward(raw, REVIEWER))


@DIRECTIONS
def test_xhtml_with_an_xml_declaration_is_cleaned(sender: str) -> None:
    xhtml = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
             '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">'
             f'<body><p>{WORDS}, Grüße</p><p>Kontakt: <a href="mailto:{sender}">{sender}</a></p>'
             '<img src="https://t.shop.example/open.gif" alt="" /></body></html>')
    msg = base(sender, f"{WORDS}\nKontakt: {sender}")
    msg.add_alternative(xhtml, subtype="html")
    out = forward(msg.as_bytes(policy=email.policy.SMTP), sender)
    assert leak_reader.finds(out, sender) == []
    html = email.message_from_bytes(out, policy=email.policy.default).get_body(("html",)).get_content()
    assert "Grüße" in html and route(sender).alias in html
    assert ("t.shop.example" in html) is (sender == REVIEWER)  # tracking goes only towards the reviewer


def test_words_survive_a_note_on_a_message_without_mime_headers() -> None:
    raw = f"From: {REVIEWER}\r\nTo: {REVIEWER_SIDE}\r\nSubject: Re: Anfrage\r\n\r\n{WORDS}, schrieb {REVIEWER}\r\n"
    late = sanitize.Route(**{**route(REVIEWER).__dict__, "extra_notes": ("[This answer came after the deadline.]",)})
    out = sanitize.forward(sanitize.parse(raw.encode()), late)
    shown = texts(out)
    assert "be-48213" in shown and "after the deadline" in shown and leak_reader.finds(out, REVIEWER) == []


def _pdf(sender: str) -> bytes:
    page = zlib.compress(f"BT /F1 9 Tf 72 700 Td (Rechnungsadresse: {sender}) Tj ET".encode())
    return (b"%PDF-1.4\n1 0 obj\n<< /Length " + str(len(page)).encode() + b" /Filter /FlateDecode >>\nstream\n"
            + page + b"\nendstream\nendobj\n%%EOF\n")


def _zip(sender: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", f"<w:t>Kontakt {sender}</w:t>")
    return buffer.getvalue()


REFUSED: dict[str, Build] = {
    "an invoice PDF with compressed pages": lambda s: attach_raw(
        s, "Content-Type: application/pdf; name=Rechnung.pdf\r\nContent-Transfer-Encoding: base64", b64(_pdf(s))),
    "a .docx (a zip of XML)": lambda s: attach_raw(
        s, "Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name=a.docx\r\n"
        "Content-Transfer-Encoding: base64", b64(_zip(s))),
    "JSON with \\u0040": lambda s: attach_raw(
        s, "Content-Type: application/json; name=export.json", s.replace("@", "\\u0040").encode()),
}


@DIRECTIONS
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_documents_that_name_the_sender_are_refused(name: str, sender: str) -> None:
    raw = REFUSED[name](sender)
    assert leak_reader.finds(raw, sender), f"{name}: the test's own reader is blind to it"
    with pytest.raises(sanitize.Unprocessable, match="survived"):
        forward(raw, sender)


@DIRECTIONS
def test_undeclared_8bit_text_keeps_its_words(sender: str) -> None:
    """No charset and 8-bit UTF-8 (scripts, old phones): read as UTF-8, not as ASCII with every
    umlaut replaced, when the part has to be rewritten."""
    raw = (f"From: {sender}\r\nSubject: Re\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           f"Grüße aus Köln, {WORDS}, schreiben Sie an {sender}\r\n").encode()
    text = email.message_from_bytes(forward(raw, sender), policy=email.policy.default).get_content()
    assert "Grüße aus Köln" in text and route(sender).alias in text


def test_html_that_names_its_charset_only_in_meta_keeps_its_words() -> None:
    html = '<html><head><meta charset="utf-8"></head><body>25 €, Größe 39 <img src="https://t.example/p.gif"></body></html>'
    raw = (f"From: {BUSINESS}\r\nSubject: Re\r\nContent-Type: text/html\r\n\r\n{html}\r\n").encode()
    out = email.message_from_bytes(forward(raw, BUSINESS), policy=email.policy.default).get_content()
    assert "25 €, Größe 39" in out and "t.example" not in out


@DIRECTIONS
def test_a_transfer_encoding_with_a_comment_is_decoded(sender: str) -> None:
    raw = (f"From: {sender}\r\nSubject: Re\r\nContent-Type: text/plain; charset=utf-8\r\n"
           f"Content-Transfer-Encoding: quoted-printable (Umlaute)\r\n\r\n{WORDS} Gr=C3=BC=C3=9Fe "
           f"{sender.replace('@', '=40')}\r\n").encode()
    out = forward(raw, sender)
    assert leak_reader.finds(out, sender) == [] and "grüße" in texts(out)


@DIRECTIONS
def test_only_the_first_content_type_is_forwarded(sender: str) -> None:
    raw = (f"From: {sender}\r\nSubject: Re\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Type: multipart/mixed;"
           f" boundary=dd\r\n\r\n--dd\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           f"{WORDS} {sender.replace('@', '=40')}\r\n--dd--\r\n").encode()
    out = forward(raw, sender)
    assert out.split(b"\r\n\r\n")[0].count(b"Content-Type:") == 1 and leak_reader.finds(out, sender) == []


def test_the_text_around_parts_is_not_forwarded() -> None:
    raw = attach_raw(REVIEWER, "Content-Type: text/plain", b"Anhang").replace(
        b"--outer\r\n", f"Vorspann von {REVIEWER.replace('@', '<b>@</b>')}\r\n--outer\r\n".encode(), 1)
    out = forward(raw, REVIEWER)
    assert b"Vorspann" not in out and leak_reader.finds(out, REVIEWER) == []


def test_a_name_written_beside_the_senders_address_is_replaced_in_attributions() -> None:
    """From carries no name, but the quoted history does: "Anna Schmidt <address> wrote:"."""
    raw = (f"From: {REVIEWER}\r\nSubject: Re\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{WORDS}\r\n\r\n"
           f"On Mon, 2 Mar 2026 at 10:00 AM Maximilian Mueller <{REVIEWER}> wrote:\r\n> Alt\r\n"
           "02.03.2026 10:05:00, Maximilian Mueller:\r\n> Noch aelter\r\n").encode()
    text = email.message_from_bytes(forward(raw, REVIEWER), policy=email.policy.default).get_content()
    assert "Maximilian" not in text and "10:00 AM Max M. <" in text and "10:05:00, Max M.:" in text
