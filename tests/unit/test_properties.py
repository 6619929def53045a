"""Property tests: an address hidden in random headers, parts, charsets, transfer encodings and
textual forms never survives sanitising, and the sender's own words always do."""

from __future__ import annotations

import email.policy
import urllib.parse
from datetime import datetime
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.core import leaks, sanitize
from tests.helpers import leak_reader
from tests.helpers.views import independent_texts

ALIAS = "z" * 32 + "@relay.test"

addresses = st.builds(lambda local, domain, tld: f"{local}@{domain}.{tld}",
                      st.from_regex(r"[a-z][a-z0-9]{0,6}([._-][a-z0-9]{1,6})?", fullmatch=True),
                      st.from_regex(r"[a-z]{3,10}", fullmatch=True), st.sampled_from(["de", "com", "org", "co.uk"]))


def forms(address: str) -> st.SearchStrategy[str]:
    local, domain = address.split("@")
    return st.sampled_from([
        address, address.upper(), address.title(), f"mailto:{address}",
        address.replace("@", "%40"), urllib.parse.quote(address, safe=""),
        "".join(f"%{ord(c):02X}" for c in address), address.replace("@", "&#64;"),
        address.replace("@", "&#x40;").replace(".", "&#46;"), f"{local}&commat;{domain}",
    ])


charsets = st.sampled_from(["utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "utf-7", "shift_jis"])
encodings = st.sampled_from(["quoted-printable", "base64", "8bit", "7bit"])
places = st.lists(st.sampled_from(["subject", "x-header", "cc", "reply-to", "comments", "plain", "html-attr",
                                   "html-comment", "html-alt", "nested", "filename", "description"]),
                  min_size=1, max_size=5, unique=True)


def text_part(text: str, subtype: str, charset: str, cte: str) -> EmailMessage:
    part = EmailMessage()
    try:
        part.set_content(text, subtype=subtype, charset=charset, cte=cte)
    except (ValueError, UnicodeError, LookupError):
        part.set_content(text, subtype=subtype, charset="utf-8", cte="base64")
    return part


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), address=addresses, where=places, charset=charsets, cte=encodings,
       words=st.integers(1000, 99999))
def test_hidden_address_never_survives(data: st.DataObject, address: str, where: list[str], charset: str,
                                       cte: str, words: int) -> None:
    form = data.draw(forms(address))
    own = f"Bestellnummer ORD-{words} Grüße"
    if cte == "7bit" or charset == "utf-7":
        own = f"Bestellnummer ORD-{words} Gruesse"
    msg = EmailMessage()
    msg["From"] = f"Some Body <{address}>"
    msg["To"] = "a" * 32 + "@relay.test"
    msg["Subject"] = f"Re: Anfrage {form}" if "subject" in where else "Re: Anfrage"
    for place, header in (("x-header", "X-Sender-Info"), ("cc", "Cc"), ("reply-to", "Reply-To"),
                          ("comments", "Comments")):
        if place in where:
            msg[header] = form if place in ("cc", "reply-to") and "@" in form else f"see {form}"
    body = own + (f"\nSchreiben Sie an {form}\n" if "plain" in where else "\n")
    msg.set_content(body, charset=charset if cte != "7bit" else "us-ascii", cte=cte) \
        if _encodable(body, charset, cte) else msg.set_content(body, charset="utf-8", cte="base64")
    html = f"<p>{own}</p>"
    if "html-attr" in where:
        html += f'<a href="mailto:{form}">mail</a>'
    if "html-comment" in where:
        html += f"<!-- {form} -->"
    if "html-alt" in where:
        html += f'<img alt="{form}" src="cid:x">'
    msg.add_alternative(html, subtype="html")
    if "nested" in where:
        inner = EmailMessage()
        inner["From"] = address
        inner["Subject"] = "Bestellung"
        inner.set_content(f"Kunde: {form}", charset=charset if cte != "7bit" else "utf-8")
        msg.add_attachment(inner)
    if "filename" in where or "description" in where:
        msg.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf",
                           filename=f"Rechnung {address}.pdf" if "filename" in where else "Rechnung.pdf")
        if "description" in where:
            list(msg.iter_attachments())[-1]["Content-Description"] = f"von {form}"

    route = sanitize.Route(hidden=(address,), alias=ALIAS, sender_name="S. B.", platform_name="ReviewHub",
                           recipient="shop@example.net", message_id="<p@relay.test>", date=datetime(2026, 3, 2))
    out = sanitize.forward(sanitize.parse(msg.as_bytes()), route)
    assert not leaks.found(out, address)
    assert leak_reader.finds(out, address) == []
    assert any(f"ord-{words}" in v for v in independent_texts(out)), "the sender's own words were lost"


def _encodable(text: str, charset: str, cte: str) -> bool:
    try:
        text.encode("ascii" if cte == "7bit" else charset)
    except (UnicodeError, LookupError):
        return False
    return True


SHAPES = ["bare", "no-content-type", "single", "single-html", "alternative", "mixed"]


def any_shape(shape: str, charset: str, words: str, card: bool) -> bytes:
    """A message in one of the shapes senders write: no MIME headers at all (swaks, scripts),
    only some of them, a single part, or multipart; `card` adds a contact card the relay removes."""
    head = "From: Some Body <some.body@example.org>\r\nTo: " + "a" * 32 + "@relay.test\r\nSubject: Re: Anfrage\r\n"
    text = f"Guten Tag,\r\n{words}\r\nGruss\r\n"
    if shape == "bare":
        return (head + "\r\n" + text).encode()
    if shape == "no-content-type":
        return (head + "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + text).encode()
    msg = EmailMessage()
    msg["From"], msg["Subject"] = "Some Body <some.body@example.org>", "Re: Anfrage"
    if shape == "single-html":
        msg.set_content(f"<p>{words}</p>", subtype="html", charset=charset)
    else:
        msg.set_content(text, charset=charset)
    if shape == "alternative":
        msg.add_alternative(f"<p>{words}</p>", subtype="html")
    if shape == "mixed":
        msg.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename="Rechnung.pdf")
    if card:
        msg.add_attachment("BEGIN:VCARD\r\nFN:Some Body\r\nEND:VCARD\r\n", subtype="vcard")
    return msg.as_bytes(policy=email.policy.SMTP)


@settings(max_examples=100, deadline=None)
@given(shape=st.sampled_from(SHAPES), charset=st.sampled_from(["utf-8", "iso-8859-1"]),
       number=st.integers(10000, 99999), card=st.booleans(),
       notes=st.lists(st.sampled_from(["[This answer came after the deadline.]", "[Removed: a contact card.]"]),
                      max_size=2))
def test_the_senders_words_survive_every_note(shape: str, charset: str, number: int, card: bool,
                                              notes: list[str]) -> None:
    """Whenever the relay adds a note (a late answer, removed attachments), the sender's content is
    still there: a message without Content-Type once lost its whole text to the note."""
    words = f"Bestellnummer ORD-{number}"
    raw = any_shape(shape, charset, words, card and shape not in ("bare", "no-content-type"))
    route = sanitize.Route(hidden=("some.body@example.org",), alias=ALIAS, sender_name="S. B.",
                           platform_name="ReviewHub", recipient="shop@example.net", message_id="<n@relay.test>",
                           date=datetime(2026, 3, 2), extra_notes=tuple(notes))
    out = sanitize.forward(sanitize.parse(raw), route)
    views = independent_texts(out)
    assert any(f"ord-{number}" in v for v in views), "the sender's words were lost to the note"
    assert all(any(note.lower() in v for v in views) for note in notes)
    if card and shape not in ("bare", "no-content-type"):
        assert any("attachments (vcard)" in v for v in views)
