"""Golden files: replies as Gmail, Outlook, Apple Mail, Thunderbird, iPhone and Android write them
(German and English), and a business answer with tracking, each next to the forward the relay must
make of it. Regenerate after an intended change with UPDATE_GOLDEN=1 and read the diff.

Besides byte equality, each case states the rules it covers, so a regenerated file that breaks a
rule still fails."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from relay.core import notices, sanitize
from tests.helpers import leak_reader
from tests.helpers.views import independent_texts

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"
REVIEWER_SIDE, BUSINESS_SIDE = "k" * 32 + "@relay.test", "b" * 32 + "@relay.test"

# file stem -> (texts the forward must contain, texts it must not contain), over decoded views
RULES: dict[str, tuple[list[str], list[str]]] = {
    "gmail-de": (["BE-48213", "Viele Grüße\nMaximilian Müller", BUSINESS_SIDE], ["X-Gm-", "Received:"]),
    "gmail-en": (["SHOP-7781", "2026 at 10:31 AM Max M.", "Max M. &lt;<a href"], ["Maximilian", "Mueller"]),
    "outlook-de": (["An: Max M. <" + BUSINESS_SIDE, "<b>An:</b> Max M. &lt;", "Das Relay hat eine Outlook-Datei winmail.dat",
                    "Mit freundlichen Grüßen\nMaximilian Müller"],
                   ["Müller, Maximilian", "winmail.dat\"", "Disposition-Notification-To", "Thread-Index", "X-Originating-IP"]),
    "outlook-en": (["To: Max M. <" + BUSINESS_SIDE, "The relay removed a contact card", "BE-48213"],
                   ["Maximilian", "Mueller", "+49 170", "BEGIN:VCARD", "X-Mailer"]),
    "apple-de": (["BE-48213", "Sie erreichen mich auch unter " + BUSINESS_SIDE, "Das Relay hat eine Kontaktkarte"],
                 ["BEGIN:VCARD", "Maximilian", "Apple Mail"]),
    "apple-en": (["at 13:45, Max M. <" + BUSINESS_SIDE, "a calendar invitation"], ["VCALENDAR", "Maximilian"]),
    "thunderbird-de": (["Grüße aus Köln", "einen PGP-Schlüssel"], ["PGP PUBLIC KEY", "Mozilla Thunderbird"]),
    "thunderbird-en": (["the order number is BE-48213", "a digital signature"], ["pkcs7", "multipart/signed"]),
    "iphone-de": (["BE-48213, Foto vom Kassenbon anbei."], ["iPhone Mail"]),
    "iphone-en": ([f'href="mailto:{BUSINESS_SIDE}"', f'alt="{BUSINESS_SIDE}"', f"<!-- {BUSINESS_SIDE} -->"], []),
    "android-de": (["Rückfragen gern an " + BUSINESS_SIDE], []),
    "android-en": (["mailto:" + BUSINESS_SIDE, ">Max M. <" + BUSINESS_SIDE + "> wrote:"], ["Mueller"]),
    "business-tracking-de": (['src="cid:logo@shop"', "https://shop.example/faq", REVIEWER_SIDE, "[image blocked]"],
                             ["t.shop.example", "cdn.shop.example", "Anna Schmidt |", "ShopCRM", "List-Unsubscribe"]),
    # a forwarded message/rfc822 part whose body is base64 / quoted-printable as a whole
    "fwd-rfc822-base64-de": (["BE-48213", "Die Lieferung kam erst nach drei Wochen",
                              "Die Versandbestätigung senden wir an " + BUSINESS_SIDE],
                             ["max.mueller", "example.de", "Delivered-To", "Open-Xchange"]),
    "fwd-rfc822-qp-en": (["I never got an answer to it", "my kettle (order BE-48213) arrived today with a cracked lid",
                          "my private e-mail address instead, that is " + BUSINESS_SIDE],
                         ["max.mueller", "example.de", "Maximilian"]),
    "business-fwd-rfc822-qp-de": (["erstatten wir Ihnen die Versandkosten", "BE-48213", "E-Mail: " + REVIEWER_SIDE,
                                   "Antwort bitte an " + REVIEWER_SIDE],
                                  ["service@shop", "Anna Schmidt |", "Thread-Index", "X-Mailer"]),
    # UTF-16 text with a byte order mark: an attachment without charset, a business body
    "utf16-attachment-de": (["BE-48213", "Der Wasserkocher war bei Ankunft defekt",
                             "Artikel: Wasserkocher WK-200", "E-Mail: " + BUSINESS_SIDE],
                            ["max.mueller", "example.de", "max.mueller".encode("utf-16-le").decode("latin-1"),
                             "example.de".encode("utf-16-le").decode("latin-1")]),
    "business-utf16-body-de": (["Ersatzgerät (Wasserkocher WK-200) verschickt", "BE-48213",
                                "erreichen Sie uns unter " + REVIEWER_SIDE],
                               ["service@shop".encode("utf-16-le").decode("latin-1"),
                                "@shop.example".encode("utf-16-le").decode("latin-1"), "WaWi-Connect"]),
    # markup and invisible characters inside the address
    "html-obfuscated-de": (["BE-48213", "Der Wasserkocher kam mit einem Sprung im Deckel an",
                            "direkt unter " + BUSINESS_SIDE],
                           ["max.mueller", "example.de", "exam\u00adple", "exam&shy;ple"]),
    "html-obfuscated-en": (["The kettle stopped working after two days", "BE-48213", "reach me at " + BUSINESS_SIDE],
                           ["max.mueller", "example.de", "max.mueller\u200b", "max.mueller&#8203;"]),
    "business-html-obfuscated-en": (["We have refunded the full amount of 44.89 EUR", "BE-48213",
                                     "write to " + REVIEWER_SIDE],
                                    ["@shop.example", "service<wbr>", "service<span", "service\u200b",
                                     "serv\u00adice", "serv&shy;ice"]),
    # addresses inside wrapped links (Safe Links, Google redirect, data: URL, Proofpoint, Mimecast)
    "wrapped-links-en": (["the delivery date in it was never met", "BE-48213", "Customer account: " + BUSINESS_SIDE],
                         ["max.mueller", "example.de", "mueller%2540example"]),
    "wrapped-links-de": (["Eine Antwort kam nie", "BE-48213", "Maximilian Müller\n" + BUSINESS_SIDE],
                         ["max.mueller", "example.de", "mueller%2540example", "data:text/vcard", "QkVHSU46VkNBUkQ"]),
    "business-wrapped-links-en": (["the replacement kettle for order BE-48213 left today",
                                   "To: Beispiel Shop GmbH <" + REVIEWER_SIDE + ">"],
                                  ["service@shop", "service-40shop", "service*40shop", "mailto-3Aservice"]),
    # an internationalised address, in both its Unicode and its ASCII (punycode) spelling
    "idn-gmail-de": (["geliefert wurde nur eines", "BE-51877", "Umlaute in Adressen annimmt: " + BUSINESS_SIDE,
                      "Anna\n" + BUSINESS_SIDE],
                     ["bücher.example", "xn--bcher-kva", "b%c3%bccher", "Anna Bücher"]),
    "idn-thunderbird-en": (["only one arrived, and nobody answered the phone", "BE-51877",
                            "send me a delivery note, " + BUSINESS_SIDE],
                           ["bücher.example", "xn--bcher-kva", "Anna Bücher"]),
    # signatures that carry the address encoded: inline OpenPGP, opaque S/MIME (signed-data)
    "pgp-inline-de": (["BE-48213", "drei Wochen später als zugesagt", "Maximilian Müller\n" + BUSINESS_SIDE],
                      ["max.mueller", "example.de", "BEGIN PGP SIGNATURE", "iI0EARYIADUWIQ"]),
    "business-pgp-inline-en": (["booked a refund of 44.89 EUR", "BE-48213", "please write to " + REVIEWER_SIDE],
                               ["service@shop", "BEGIN PGP SIGNATURE", "iQHJBAEBCAAzFiEE"]),
    "smime-opaque-en": (["BE-48213", "three weeks after the promised date", "Maximilian Mueller | " + BUSINESS_SIDE],
                        ["max.mueller", "example.de", "pkcs7-mime", "smime.p7m"]),
    "business-smime-opaque-de": (["Gutschrift über 44,89 EUR veranlasst", "BE-48213", REVIEWER_SIDE + " | +49 30"],
                                 ["service@shop", "pkcs7-mime", "smime.p7m", "Anna Schmidt |"]),
}


def route_for(stem: str) -> sanitize.Route:
    locale = "de" if stem.endswith("-de") else "en"
    common = dict(platform_name="ReviewHub", message_id=f"<golden.{stem}@relay.test>",
                  date=datetime(2026, 3, 2, 12, 0), in_reply_to=["<8f1c2a9e4b7d@relay.test>"],
                  references=["<8f1c2a9e4b7d@relay.test>"],
                  note=lambda removed: notices.removed_attachments(TEMPLATES, locale, removed))
    if stem.startswith("business-"):
        return sanitize.Route(hidden=(BUSINESS,), alias=REVIEWER_SIDE, sender_name="Beispiel Shop GmbH",
                              recipient=REVIEWER, block_remote=True, **common)  # type: ignore[arg-type]
    if "idn" in stem:  # a reviewer with an internationalised address, in both spellings
        return sanitize.Route(hidden=("anna@bücher.example", "anna@xn--bcher-kva.example"), alias=BUSINESS_SIDE,
                              sender_name="Anna B.", recipient=BUSINESS, **common)  # type: ignore[arg-type]
    return sanitize.Route(hidden=(REVIEWER,), alias=BUSINESS_SIDE, sender_name="Max M.",
                          recipient=BUSINESS, **common)  # type: ignore[arg-type]


def attachments(raw: bytes) -> dict[str, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return {part.get_filename() or "": part.get_payload(decode=True) for part in msg.iter_attachments()
            if part.get_content_maintype() in ("image", "application")}


@pytest.mark.parametrize("stem", sorted(RULES))
def test_golden(stem: str) -> None:
    incoming = (GOLDEN / f"{stem}.in.eml").read_bytes()
    expected_file = GOLDEN / f"{stem}.out.eml"
    route = route_for(stem)
    out = sanitize.forward(sanitize.parse(incoming), route)
    actual_file = GOLDEN / f"{stem}.actual.eml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_bytes(out)
    if out != expected_file.read_bytes():
        actual_file.write_bytes(out)  # to diff against the expected file (tests/unit/golden/README.md)
        pytest.fail(f"{stem}: forward differs from {expected_file.name}; what it is now: {actual_file.name}")
    actual_file.unlink(missing_ok=True)

    views = [v.replace("\r\n", "\n") for v in independent_texts(out)]
    for hidden in route.hidden:
        assert leak_reader.finds(out, hidden) == [], f"{hidden} leaked"
        assert leak_reader.finds(incoming, hidden), f"{stem}: the leak reader cannot see {hidden} in the input"
    must, must_not = RULES[stem]
    for text in must:
        assert any(text.lower() in v for v in views), f"{stem}: missing {text!r}"
    for text in must_not:
        assert not any(text.lower() in v.lower() for v in views), f"{stem}: still contains {text!r}"
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed["From"].addresses[0].addr_spec == route.alias
    assert parsed["Message-ID"] == route.message_id
    # documents and images pass byte for byte
    before, after = attachments(incoming), attachments(out)
    for name, payload in after.items():
        assert before.get(name) == payload, f"{stem}: attachment {name} changed"
    assert set(after) == {n for n in before if not n.endswith((".dat", ".vcf", ".ics", ".asc", ".p7s"))}
