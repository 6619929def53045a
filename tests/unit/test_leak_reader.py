"""The independent leak reader finds an address in every hidden form a person or a mail client could see it
in, and nothing in the same message carrying a look-alike instead; it stays fast on hostile input (pure).

Every case is written raw (or with the stdlib) without the relay, so the reader is tested on its own."""

from __future__ import annotations

import base64
import binascii
import random
import time
import zlib
from collections.abc import Callable
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from asn1crypto import algos, cms

from tests.helpers.leak_reader import _embedded_bytes, finds, views

ADDRESS = "anna.schmidt@example.org"
LOOKALIKE = "anna.schmidt@example.com"
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


# --- message builders: raw bytes, CRLF, so that nothing re-encodes what a case hides -------------------------

def message(headers: str = "", body: bytes = b"Danke fuer Ihre Nachricht.\r\n", boundary: str = "",
            content_type: str = "text/plain; charset=utf-8") -> bytes:
    content_type = f'multipart/mixed; boundary="{boundary}"' if boundary else content_type
    head = ("From: Relay <reply-7f3a@relay.example.net>\r\nTo: shop@example.net\r\nSubject: Re: Ihre Anfrage\r\n"
            f"MIME-Version: 1.0\r\n{headers}Content-Type: {content_type}\r\n\r\n")
    return head.encode() + body


def with_parts(*parts: bytes, boundary: str = "==leak-reader==", headers: str = "") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return message(headers, body + b"--" + boundary.encode() + b"--\r\n", boundary)


def part(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n" + body


def with_attachment(headers: str, body: bytes) -> bytes:
    return with_parts(part("Content-Type: text/plain; charset=utf-8", b"Anbei."), part(headers, body))


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def qp_all(data: bytes, width: int = 20) -> bytes:
    """Quoted-printable that escapes every non-alphanumeric byte and breaks lines often (soft breaks)."""
    tokens = [bytes([b]) if bytes([b]).isalnum() else b"=%02X" % b for b in data]
    lines, line = [], b""
    for token in tokens:
        if len(line) + len(token) > width:
            lines.append(line + b"=")
            line = b""
        line += token
    return b"\r\n".join([*lines, line])


def inner_message(address: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Anna Schmidt <{address}>"
    msg["To"] = "shop@example.net"
    msg["Subject"] = "Meine Bewertung"
    msg.set_content("Hallo,\nich hatte bestellt.\n")
    return msg.as_bytes()


def html_part(markup: str) -> bytes:
    return with_attachment("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit",
                           f"<html><body><p>{markup}</p></body></html>".encode())


def split_at_at(address: str, between: str) -> str:
    local, domain = address.split("@")
    return f"{local}{between}@{domain}"


def percent_all(text: str, encoding: str = "utf-8") -> str:
    return "".join(f"%{b:02X}" for b in text.encode(encoding))


def pgp_signed(address: str) -> bytes:
    packet = bytes(range(40)) + f"Anna Schmidt <{address}>".encode() + bytes(range(200, 256))
    armor = base64.b64encode(packet).decode()
    lines = [armor[i: i + 64] for i in range(0, len(armor), 64)]
    body = ("-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nDanke!\r\n-----BEGIN PGP SIGNATURE-----\r\n\r\n"
            + "\r\n".join(lines) + "\r\n=Xq1b\r\n-----END PGP SIGNATURE-----\r\n")
    return message(body=body.encode())


def uuencoded(address: str) -> bytes:
    data = f"Kontakt\r\nSchreiben Sie an: {address}\r\n".encode()
    lines = b"".join(binascii.b2a_uu(data[i: i + 45]) for i in range(0, len(data), 45))
    return message(body=b"Siehe unten:\r\n\r\nbegin 644 kontakt.txt\r\n" + lines.replace(b"\n", b"\r\n")
                   + b"`\r\nend\r\n")


def opaque_smime(address: str, compressed: bool = False) -> bytes:
    """An application/pkcs7-mime part whose DER holds a MIME entity that hides the address in quoted-printable."""
    entity = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    entity += qp_all(f"Mit freundlichen Gruessen, {address}".encode())
    encap = {"content_type": "data", "content": zlib.compress(entity) if compressed else entity}
    if compressed:
        content = cms.CompressedData({"version": "v0", "compression_algorithm": {"algorithm": "zlib"},
                                      "encap_content_info": encap})
    else:
        content = cms.SignedData({"version": "v1", "encap_content_info": encap, "signer_infos": [],
                                  "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})]})
    info = cms.ContentInfo({"content_type": "compressed_data" if compressed else "signed_data", "content": content})
    kind = "compressed-data" if compressed else "signed-data"
    return message("Content-Transfer-Encoding: base64\r\n", b64(info.dump()),
                   content_type=f'application/pkcs7-mime; smime-type={kind}; name="smime.p7m"')


def message_part(ctype: str, cte: str, encode: Callable[[bytes], bytes], address: str) -> bytes:
    return with_attachment(f"Content-Type: {ctype}\nContent-Transfer-Encoding: {cte}", encode(inner_message(address)))


def delivery_status(address: str, cte: str = "base64") -> bytes:
    """A bounce; written as is, the recipient is in xtext (RFC 3461), where `+40` is an `@`."""
    recipient = address if cte == "base64" else address.replace("@", "+40")
    status = (f"Reporting-MTA: dns; mx.example.net\r\n\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
              "Action: failed\r\nStatus: 5.1.1\r\n").encode()
    return with_parts(part("Content-Type: text/plain", b"Zustellung fehlgeschlagen."),
                      part(f"Content-Type: message/delivery-status\nContent-Transfer-Encoding: {cte}",
                           b64(status) if cte == "base64" else status))


def digest(address: str) -> bytes:
    return with_parts(part("Content-Transfer-Encoding: base64", b64(inner_message(address))),
                      boundary="==digest==").replace(b"multipart/mixed", b"multipart/digest")


# --- the cases: each writes the address (or a look-alike) in one hidden form ------------------------------------

CASES: dict[str, Callable[[str], bytes]] = {
    # plain forms
    "header": lambda a: message(f"Reply-To: {a}\r\n"),
    "rfc2047 b subject": lambda a: message(f"X-Subject: =?utf-8?b?{base64.b64encode(a.encode()).decode()}?=\r\n"),
    "rfc2047 q subject": lambda a: message(f"X-Subject: =?utf-8?q?{qp_all(a.encode(), 999).decode()}?=\r\n"),
    "base64 text part": lambda a: with_attachment("Content-Type: text/plain; charset=utf-8\n"
                                                  "Content-Transfer-Encoding: base64", b64(f"Gruss, {a}".encode())),
    "quoted-printable soft break": lambda a: with_attachment(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable",
        qp_all(f"Gruss, {a}".encode())),
    "rfc2231 filename": lambda a: with_attachment(
        f"Content-Type: application/pdf\nContent-Disposition: attachment;\n filename*0*=utf-8''{quote(a[:8])};\n"
        f" filename*1*={quote(a[8:], safe='')}.pdf\nContent-Transfer-Encoding: base64", b64(b"%PDF-1.4")),
    # (1) message/* encoded as a whole
    "message/rfc822 base64": lambda a: message_part("message/rfc822", "base64", b64, a),
    "message/rfc822 quoted-printable": lambda a: message_part("message/rfc822", "quoted-printable", qp_all, a),
    "message/global base64": lambda a: with_attachment(
        "Content-Type: message/global\nContent-Transfer-Encoding: base64",
        b64(f"From: Änna Schmidt <{a}>\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode())),
    "digest part base64": digest,
    "delivery-status base64": delivery_status,
    "delivery-status xtext": lambda a: delivery_status(a, "7bit"),
    # (2) UTF-16/32 without a declared charset
    "utf-16le with bom": lambda a: with_attachment(
        "Content-Type: text/plain\nContent-Disposition: attachment; filename=kontakt.txt\n"
        "Content-Transfer-Encoding: base64", b64(f"\ufeffKontakt: {a}".encode("utf-16-le"))),
    "utf-16be odd alignment": lambda a: with_attachment(
        "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
        b64(b"\x07" + f"Kontakt: {a}".encode("utf-16-be"))),
    "utf-32be": lambda a: with_attachment("Content-Type: text/plain\nContent-Transfer-Encoding: base64",
                                          b64(f"Kontakt: {a}".encode("utf-32-be"))),
    # (3) HTML and invisible characters
    "html wbr": lambda a: html_part(split_at_at(a, "<wbr>")),
    "html span": lambda a: html_part(a.replace("@", "<span>@</span>")),
    "html comment": lambda a: html_part(f"{a[:4]}<!-- x -->{a[4:]}"),
    "html soft hyphen entity": lambda a: html_part(split_at_at(a, "&shy;")),
    "html numeric entity": lambda a: html_part(a.replace("@", "&#64;")),
    **{f"html zero-width U+{ord(c):04X}": (lambda a, c=c: html_part(split_at_at(a, c))) for c in ZERO_WIDTH},
    **{f"plain zero-width U+{ord(c):04X}": (lambda a, c=c: message(body=split_at_at(a, c).encode()))
       for c in ZERO_WIDTH},
    "fullwidth at sign": lambda a: message(body=a.replace("@", "\uff20").encode()),
    # (4) URLs, data: URIs, uuencode
    "safelinks %2540": lambda a: html_part(
        '<a href="https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fshop.example.net%2Fr%3Fto%3D'
        + a.replace("@", "%2540") + '&amp;data=05%7C01&amp;reserved=0">Antworten</a>'),
    "google redirect %252540": lambda a: html_part(
        f'<a href="https://www.google.com/url?q=https://shop.example.net/r?to%3D{a.replace("@", "%252540")}'
        '&amp;sa=D">Antworten</a>'),
    "proofpoint v2": lambda a: message(body=(
        "https://urldefense.proofpoint.com/v2/url?u=https-3A__shop.example.net_r-3Fto-3D"
        + a.replace("@", "-40") + "&d=DwMFaQ&c=abc&r=def&m=ghi&s=jkl&e=").encode()),
    "proofpoint v3": lambda a: message(body=(
        f"https://urldefense.com/v3/__https://shop.example.net/r?to={a.replace('@', '*')}__;QA!!abc$").encode()),
    "data: vcard href": lambda a: html_part(
        '<a href="data:text/vcard;base64,'
        + base64.b64encode(f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Anna\r\nEMAIL:{a}\r\nEND:VCARD\r\n".encode()).decode()
        + '">Kontakt</a>'),
    "data: percent-encoded in css url()": lambda a: html_part(
        f"<div style=\"background:url('data:text/plain;charset=utf-8,{percent_all(a)}')\">x</div>"),
    "data: percent-encoded utf-16 in css url()": lambda a: html_part(
        f"<div style=\"background:url(data:text/plain;charset=utf-16le,{percent_all(a, 'utf-16-le')})\">x</div>"),
    "uuencoded block": uuencoded,
    # (6) signatures and S/MIME
    "inline pgp signature": pgp_signed,
    "opaque s/mime signed-data": opaque_smime,
    "opaque s/mime compressed-data": lambda a: opaque_smime(a, compressed=True),
}
VISIBLE = {"header"}  # every other case hides the address from a plain search of the bytes


@pytest.mark.parametrize("name", CASES)
def test_hidden_address_is_found(name: str) -> None:
    raw = CASES[name](ADDRESS)
    if name not in VISIBLE:
        assert ADDRESS not in raw.decode("latin-1").lower(), "the case does not hide the address"
        assert ADDRESS not in raw.decode("utf-8", "replace").lower(), "the case does not hide the address"
    assert finds(raw, ADDRESS), name
    assert finds(raw, ADDRESS.upper()), name


@pytest.mark.parametrize("name", CASES)
def test_lookalike_is_not_found(name: str) -> None:
    assert finds(CASES[name](LOOKALIKE), ADDRESS) == []


# --- (5) internationalised domains -----------------------------------------------------------------------------

SMTPUTF8 = message().replace(b"From: Relay <reply-7f3a@relay.example.net>",
                             "From: Anna <anna@bücher.example>".encode())  # a raw UTF-8 header
IDN_CASES = [
    ("a-label written, u-label asked", message("Reply-To: anna@xn--bcher-kva.example\r\n"), "anna@bücher.example"),
    ("u-label written, a-label asked", with_attachment(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
        b64("Kontakt: anna@bücher.example".encode())), "anna@xn--bcher-kva.example"),
    ("smtputf8 header", SMTPUTF8, "anna@bücher.example"),
    ("smtputf8 header, a-label asked", SMTPUTF8, "anna@xn--bcher-kva.example"),
    ("upper-case u-label asked", message("Reply-To: anna@xn--bcher-kva.example\r\n"), "Anna@BÜCHER.example"),
]


@pytest.mark.parametrize(("name", "raw", "asked"), IDN_CASES, ids=[c[0] for c in IDN_CASES])
def test_either_idn_spelling_is_found(name: str, raw: bytes, asked: str) -> None:
    assert finds(raw, asked), name


def test_other_idn_domains_are_not_found() -> None:
    raw = message("Reply-To: anna@xn--bcher-kva.example, anna@buecher.example\r\n")
    assert finds(raw, "anna@bäcker.example") == []
    assert finds(raw, "anna@xn--bcker-gra.example") == []
    assert finds(raw, "anna@bucher.example") == []


# --- the reader's own behaviour --------------------------------------------------------------------------------

def test_views_are_lowercased_and_excerpts_are_short() -> None:
    raw = message(body=b"x" * 5000 + ADDRESS.upper().encode() + b"y" * 5000)
    assert all(v == v.lower() for v in views(raw))
    assert all(len(hit) < 200 for hit in finds(raw, ADDRESS))


def test_a_clean_message_gives_nothing() -> None:
    raw = with_parts(part("Content-Type: text/plain; charset=utf-8", b"Bestellnummer 4711, anna.schmidt at example"),
                     part("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64",
                          b64(b"<p>Danke &amp; Gruss</p>")))
    assert finds(raw, ADDRESS) == []


def forwarded(raw: bytes, levels: int) -> bytes:
    for level in range(levels):
        raw = with_parts(part("Content-Type: text/plain", b"weitergeleitet"), part("Content-Type: message/rfc822", raw),
                         boundary=f"==level-{level}==")
    return raw


def test_deep_nesting_terminates_quickly() -> None:
    raw = forwarded(message(f"Reply-To: {ADDRESS}\r\n"), 50)
    start = time.monotonic()
    assert finds(raw, ADDRESS)  # written as is, so the outer levels' text shows it
    assert time.monotonic() - start < 20


def test_an_encoded_part_in_a_forward_of_a_forward_is_read() -> None:
    innermost = CASES["quoted-printable soft break"]
    assert finds(forwarded(innermost(ADDRESS), 15), ADDRESS)
    assert finds(forwarded(innermost(LOOKALIKE), 15), ADDRESS) == []


def test_nested_multiparts_terminate_quickly() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + b64(ADDRESS.encode())
    for level in range(300):
        raw = part(f'Content-Type: multipart/mixed; boundary="b{level}"',
                   f"--b{level}\r\n".encode() + raw + f"\r\n--b{level}--\r\n".encode())
    start = time.monotonic()
    assert finds(raw, ADDRESS)  # too deep to walk, but the base64 run in the outer text is decoded
    assert time.monotonic() - start < 20


def test_huge_attachment_is_read_within_bounds_and_later_parts_still_are() -> None:
    blob = random.Random(0).randbytes(5_000_000)
    raw = with_parts(part("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64", b64(blob)),
                     part("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
                          b64(f"Gruss, {ADDRESS}".encode())))
    start = time.monotonic()
    assert finds(raw, ADDRESS)
    assert time.monotonic() - start < 60


def test_repeated_percent_encoding_is_undone() -> None:
    raw = message(body=ADDRESS.replace("@", "%" + "25" * 12 + "40").encode())
    assert finds(raw, ADDRESS)


def test_data_uri_payloads_are_decoded_on_their_own() -> None:
    """Other routes (percent-decoding, base64 runs) overlap with this one in the cases above; this one alone."""
    text = "url(data:text/plain;charset=utf-16le,a%00%40%00) src=\"data:image/svg+xml;base64,PHN2Zz4=\""
    assert (b"a\x00@\x00", "utf-16le") in _embedded_bytes(text)
    assert (b"<svg>", None) in _embedded_bytes(text)
