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

from relay import notices, sanitize

from .test_sanitize import independent_texts

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
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
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_bytes(out)
    assert out == expected_file.read_bytes(), f"{stem}: forward differs from {expected_file.name}"

    views = [v.replace("\r\n", "\n") for v in independent_texts(out)]
    hidden = route.hidden[0]
    assert not [v for v in views if hidden in v], f"{hidden} leaked"
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
