"""DKIM signing in the core, without DNS: signatures that dkimpy verifies (the public keys handed to
it directly), the body hash worked in pieces equal to dkimpy's of the whole body, keys the relay
takes and refuses, and the DNS record as text. The same signatures against a real DNS server and
OpenDKIM: tests/integration/test_dkim.py."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core import dkim_sign

NOW = datetime(2026, 11, 22, 17, 38, 48)
MESSAGE = (b'From: "ReviewHub" <notices@relay.test>\r\nTo: service@shop.example\r\n'
           b"Subject: =?utf-8?q?Ihre_Anfrage_zu_R-1?= and a subject long enough\r\n to be folded\r\n"
           b"Date: Sun, 22 Nov 2026 18:38:48 +0100\r\nMessage-ID: <abc@relay.test>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"Auto-Submitted: auto-generated\r\n\r\nGuten Tag,  \r\n\r\nder Bewerter hat geantwortet.\r\n\r\n\r\n")

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA = dkim_sign.Key("relay.test", "relay", RSA_KEY)
ED = dkim_sign.Key("relay.test", "relay-ed25519", ED_KEY)


def records(*keys: dkim_sign.Key) -> dict[str, str]:
    return {f"{key.record_name}.": dkim_sign.public_record(key.private) for key in keys}


def verifies(message: bytes, published: dict[str, str], index: int = 0) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        found = published.get(name.decode())
        return found.encode() if found else None

    try:
        return bool(dkim.DKIM(message).verify(index, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def tags(message: bytes, index: int = 0) -> dict[str, str]:
    fields = [value for name, value in dkim.rfc822_parse(message)[0] if name.lower() == b"dkim-signature"]
    return {k.strip(): re.sub(r"\s+", "", v) for k, v in
            (part.split("=", 1) for part in fields[index].decode().split(";") if "=" in part)}


def test_an_rsa_signature_verifies_and_covers_what_it_should() -> None:
    signed = dkim_sign.sign(MESSAGE, [RSA], NOW)
    assert signed.endswith(MESSAGE) and signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert verifies(signed, records(RSA))
    found = tags(signed)
    assert (found["c"], found["d"], found["s"], found["t"]) == ("relaxed/relaxed", "relay.test", "relay", "1795369128")
    assert found["h"].split(":") == ["from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                                     "content-transfer-encoding", "from"]  # From oversigned
    assert all(len(line) <= 78 for line in signed.split(b"\r\n\r\n")[0].split(b"\r\n"))
    assert dkim_sign.sign(MESSAGE, [RSA], NOW) == signed  # a pure function of its input


def test_a_signature_breaks_with_the_message() -> None:
    signed = dkim_sign.sign(MESSAGE, [RSA], NOW)
    published = records(RSA)
    for changed in (signed.replace(b"geantwortet", b"nicht geantwortet"),  # the body
                    signed.replace(b"To: service@", b"To: other@"),  # a signed header field
                    signed.replace(b"\r\n\r\nGuten", b"\r\nFrom: someone@else.example\r\n\r\nGuten")):  # a second From
        assert not verifies(changed, published)
    # what relaxed canonicalisation forgives: whitespace at line ends, header case and folding
    assert verifies(signed.replace(b"Guten Tag,  \r\n", b"Guten Tag,\r\n").replace(b"Subject:", b"SUBJECT:"),
                    published)
    assert verifies(signed.replace(b"Auto-Submitted", b"X-Spam: no\r\nAuto-Submitted"), published)  # unsigned field


def test_dual_signing_adds_two_signatures_that_each_verify() -> None:
    signed = dkim_sign.sign(MESSAGE, [RSA, ED], NOW)
    assert [tags(signed, i)["a"] for i in (0, 1)] == ["rsa-sha256", "ed25519-sha256"]
    published = records(RSA, ED)
    assert verifies(signed, published, 0) and verifies(signed, published, 1)
    only_rsa = records(RSA)  # a receiver that finds no Ed25519 key still has the RSA signature
    assert verifies(signed, only_rsa, 0) and not verifies(signed, only_rsa, 1)


def test_messages_with_bare_line_feeds_and_without_a_body() -> None:
    bare = MESSAGE.replace(b"\r\n", b"\n")
    signed = dkim_sign.sign(bare, [RSA], NOW)
    assert signed.endswith(bare) and b"\r" not in signed
    assert verifies(signed, records(RSA))
    headers_only = b"From: a@relay.test\r\nSubject: x\r\n"
    assert verifies(dkim_sign.sign(headers_only, [ED], NOW), records(ED))
    with pytest.raises(ValueError, match="no From"):
        dkim_sign.sign(b"Subject: x\r\n\r\nbody\r\n", [RSA], NOW)
    assert dkim_sign.sign(MESSAGE, [], NOW) == MESSAGE


LINES = st.lists(st.text(alphabet=" \tab\r", max_size=12), max_size=12)


@settings(max_examples=300, deadline=None)
@given(lines=LINES, ending=st.sampled_from(["\r\n", "\n"]), last=st.booleans(), chunk=st.integers(1, 40))
def test_the_body_hash_in_pieces_is_dkimpys_of_the_whole_body(lines: list[str], ending: str, last: bool,
                                                              chunk: int) -> None:
    body = ending.join(lines) + (ending if last else "")
    message = b"From: a@relay.test" + ending.encode() + ending.encode() + body.encode()
    _, whole = dkim.rfc822_parse(message)
    expected = hashlib.sha256(Relaxed.canonicalize_body(whole)).digest()
    start = message.index(ending.encode() * 2) + 2 * len(ending)
    assert dkim_sign.body_digest(message, start, chunk=chunk) == expected


def pem(key: object, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


# made by `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:768` (cryptography makes none this short)
SHORT_RSA = b"""\
-----BEGIN PRIVATE KEY-----
MIIB5QIBADANBgkqhkiG9w0BAQEFAASCAc8wggHLAgEAAmEAqLitj2zSN/8azIFG
2P09rpRvaZ1bC7fGBnBcJngoe8kJtt2MZE92Tq3CEmlEo8weMVjnRKnUqs44F4U9
zYsOeDftHTmtf/os/OY2NEl7Dttzb06o1q5r28peyM/pA2WHAgMBAAECYF2JjQcf
sGfE8SmBXjK8Kq8XsbCewTP83TcCocPeB6ugp9cOel++QfuajyY/4ALjDM+jBKSk
iv3SFyc22/jgM07IM5jlCjdj/AsHKPk4EYO2ILgx2nKejOmflOohWw6joQIxANFB
loAO3yO6I6QuqmswnOaWYOkkudo6lOuLqDXU3lqdTyuLSZ5YFKIWUq3zdFXmMQIx
AM5pFrKhO4iUIgaiJiyObWBs+aseUnKO6unv9OlKCt5sF5uhBoldlIfnFZHUc0TB
NwIxALnAvxhuGyZb1ceopR8ByEXot54+O7y8w/VTw74FeFx3yA+fVXp6Ndasejhw
JJUcAQIwEoz7Tz6SXSoDDNmR2LtMNThWD/z/p/AUSMYaGsVeyLKqRIBqV/ojGTu5
gou3eFxtAjEAsm46TNzk21TYWEkgN1+fRYgBuvuhMCgVdwaJR86u14m8xOv+JmFt
Pa7zRRGUJQnb
-----END PRIVATE KEY-----
"""


def test_keys_the_relay_takes_and_refuses() -> None:
    assert dkim_sign.kind_of(dkim_sign.parse_key(pem(RSA_KEY))) == "rsa"  # PKCS#8
    assert dkim_sign.kind_of(dkim_sign.parse_key(pem(RSA_KEY, serialization.PrivateFormat.TraditionalOpenSSL))) == "rsa"
    assert dkim_sign.kind_of(dkim_sign.parse_key(pem(ED_KEY))) == "ed25519"
    encrypted = RSA_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"secret"))
    public = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for data, reason in ((encrypted, "encrypted"), (public, "no PEM private key"), (b"", "no PEM private key"),
                         (SHORT_RSA, "768-bit RSA key"), (pem(ec.generate_private_key(ec.SECP256R1())), "RSA or Ed25519")):
        with pytest.raises(ValueError, match=reason):
            dkim_sign.parse_key(data)


def test_the_dns_record_as_text() -> None:
    record = dkim_sign.public_record(RSA_KEY)
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjANBg")
    strings = dkim_sign.txt_strings(record)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings) and "".join(strings) == record
    line = dkim_sign.zone_line(RSA)
    assert line.startswith('relay._domainkey.relay.test. IN TXT "v=DKIM1; k=rsa; p=')
    assert re.findall(r'"([^"]*)"', line) == strings
    assert dkim_sign.public_record(ED_KEY).startswith("v=DKIM1; k=ed25519; p=")
    assert dkim_sign.selector("Relay-2026.a") == "relay-2026.a"
    for bad in ("", "-relay", "relay_1", "a..b", "relay."):
        with pytest.raises(ValueError, match="not a selector"):
            dkim_sign.selector(bad)
