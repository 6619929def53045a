"""The final scan finds an address in every form and place it can hide in an encoded message,
and nothing where it is not (pure)."""

from __future__ import annotations

import base64
import quopri
from email.message import EmailMessage

import pytest

from relay.core import leaks, redact
from relay.core.compose import to_bytes

ADDRESS = "max.mueller@example.de"


def with_part(content: bytes, maintype: str, subtype: str, cte: str, charset: str | None = None,
              subject: str = "Re: Anfrage") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Max M. <relay-alias@relay.test>"
    msg["Subject"] = "SUBJECT"
    msg.set_content("Guten Tag,\nanbei die Bestellnummer.\n")
    msg.add_attachment(content, maintype=maintype, subtype=subtype, cte=cte, filename="x")
    if charset:
        msg.get_payload()[1].set_param("charset", charset)
    return to_bytes(msg).replace(b"SUBJECT", subject.encode(), 1)  # as written, encoded words and all


CASES = {
    "plain in the body": lambda: with_part(f"schreiben Sie an {ADDRESS}".encode(), "text", "plain", "7bit"),
    "upper case": lambda: with_part(ADDRESS.upper().encode(), "text", "plain", "7bit"),
    "url-encoded in a link": lambda: with_part(b'<a href="mailto:max%2Emueller%40example.de">x</a>', "text", "html",
                                               "7bit"),
    "entities in base64 html": lambda: with_part(b"max&#46;mueller&#x40;example&period;de", "text", "html", "base64"),
    "soft line break in quoted-printable": lambda: with_part(
        quopri.decodestring(b"max.muel=\nler@example.de"), "text", "plain", "quoted-printable"),
    "latin-1 text": lambda: with_part(f"Grüße, {ADDRESS}".encode("latin-1"), "text", "plain", "base64", "latin-1"),
    "utf-16 in a document": lambda: with_part(f"Kontakt: {ADDRESS}".encode("utf-16-le"), "application", "msword",
                                              "base64"),
    "utf-16 big endian": lambda: with_part(f"Kontakt: {ADDRESS}".encode("utf-16-be"), "application", "msword",
                                           "base64"),
    "ascii in an image": lambda: with_part(b"\x89PNG\r\n\x1a\n" + ADDRESS.encode() + b"\x00" * 64, "image", "png",
                                           "base64"),
    "utf-7 text that is ascii as written": lambda: with_part(b"max.mueller+AEA-example.de", "text", "plain", "7bit",
                                                             "utf-7"),
    "encoded word in a header": lambda: with_part(b"Hallo", "text", "plain", "7bit",
                                                  subject="=?utf-8?b?" + base64.b64encode(ADDRESS.encode()).decode()
                                                  + "?="),
}


@pytest.mark.parametrize("name", CASES)
def test_every_form_is_found(name: str) -> None:
    raw = CASES[name]()
    assert leaks.found(raw, ADDRESS), name
    assert not leaks.found(raw, "someone.else@example.de"), name
    assert leaks.found(raw, "someone.else@example.de", ADDRESS), name  # any of several


def test_look_alikes_and_clean_messages_pass() -> None:
    clean = with_part(b"Bestellnummer 4711, max.mueller at example dot de", "text", "plain", "7bit")
    assert not leaks.found(clean, ADDRESS)
    assert not leaks.found(with_part(b"max.mueller@example.com", "text", "plain", "7bit"), ADDRESS)
    assert not leaks.found(with_part("Grüße".encode("utf-16-le"), "application", "msword", "base64"), ADDRESS)


def test_long_texts_are_searched_as_thoroughly_as_short_ones() -> None:
    filler = "Lorem ipsum dolor sit amet, consectetur. " * 400
    for form in (ADDRESS, "max%2Emueller%40example.de", "max&#46;mueller&commat;example.de", ADDRESS.upper(),
                 "&#x6D;ax.mueller&#0000000000064;example.de"):
        assert redact.contains_address(filler + form + filler, ADDRESS), form
        assert redact.contains_address_bytes((filler + form + filler).encode(), ADDRESS), form
    assert not redact.contains_address(filler + "max.mueller@example.com" + filler, ADDRESS)
