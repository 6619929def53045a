"""DKIM signatures for what the relay sends (RFC 6376, Ed25519 by RFC 8463): a pure function of the
message, the keys and the time, so the same input signs the same way in a test as in the worker.

The message's parsing and relaxed canonicalisation, and the hashing of the signed header fields,
are dkimpy's, the parts where two implementations most easily disagree. The private-key operation
is OpenSSL's (the `cryptography` package): dkimpy computes RSA in Python, about 20 ms for a 2048-bit
key that holds the interpreter the whole time, against a third of a millisecond in OpenSSL. Nothing
here looks anything up: signing needs no DNS.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy, compress_whitespace, strip_trailing_whitespace

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# the header fields each signature covers, every instance present; From once more than it appears,
# so that a second From added on the way breaks the signature instead of being shown to the reader
SIGNED = ("from", "to", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
          "mime-version", "content-type", "content-transfer-encoding")
OVERSIGNED = ("from",)
_SIGNED, _OVERSIGNED = {name.encode() for name in SIGNED}, [name.encode() for name in OVERSIGNED]
MIN_RSA_BITS = 1024  # RFC 8301: verifiers ignore signatures by shorter keys
CANONICALIZATION = b"relaxed/relaxed"
_POLICY = CanonicalizationPolicy.from_c_value(CANONICALIZATION)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TXT_STRING = 255  # the longest string one TXT record string holds
_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class Key:
    """One signing identity: the domain (d=), the selector (s=) and the private key."""

    domain: str
    selector: str
    private: PrivateKey

    @property
    def kind(self) -> str:
        """The key type as the DNS record's k= names it."""
        return kind_of(self.private)

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if self.kind == "ed25519" else "rsa-sha256"

    @property
    def record_name(self) -> str:
        """Where receivers look the public key up."""
        return f"{self.selector}._domainkey.{self.domain}"


def kind_of(key: PrivateKey) -> str:
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"


def selector(text: str) -> str:
    """A selector as DNS takes it: labels of letters, digits and inner hyphens, joined by dots."""
    if not _SELECTOR.fullmatch(text) or len(text) > 200:
        raise ValueError(f"{text!r} is not a selector (letters, digits, inner hyphens; dots between labels)")
    return text.lower()


def parse_key(pem: bytes) -> PrivateKey:
    """An RSA (at least 1024 bits) or Ed25519 private key from PEM, PKCS#1 or PKCS#8, unencrypted;
    ValueError with a sentence saying what is wrong otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValueError("is encrypted: the relay needs the key without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("holds no PEM private key (PKCS#1 or PKCS#8, RSA or Ed25519)") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"is a {key.key_size}-bit RSA key: receivers ignore DKIM keys under "
                             f"{MIN_RSA_BITS} bits (use 2048)")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(f"is a {type(key).__name__.removeprefix('_')} key: DKIM signs with RSA or Ed25519")


def public_record(key: PrivateKey) -> str:
    """The DNS TXT record that publishes the key's public half (RFC 6376 3.6.1, RFC 8463 4)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        data = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k={kind_of(key)}; p={base64.b64encode(data).decode()}"


def txt_strings(record: str) -> list[str]:
    """A TXT record's text as the strings DNS carries it in: at most 255 bytes each (an RSA key of
    2048 bits needs two); receivers join them without a separator."""
    data = record.encode("ascii")
    return [data[i:i + _TXT_STRING].decode() for i in range(0, len(data), _TXT_STRING)] or [""]


def zone_line(key: Key) -> str:
    """The record as one line of a zone file: `<selector>._domainkey.<domain>. IN TXT "..." "..."`."""
    strings = " ".join(f'"{part}"' for part in txt_strings(public_record(key.private)))
    return f"{key.record_name}. IN TXT {strings}"


def sign(message: bytes | bytearray, keys: Sequence[Key], now: datetime) -> bytes | bytearray:
    """`message` with one DKIM-Signature header field per key on top (the first key's topmost), each
    over the same header fields and body, so each verifies on its own: with an RSA and an Ed25519
    key, receivers that know Ed25519 check both, the others the RSA one (RFC 8463 dual signing).

    `now` (naive UTC) is the signature's t=. Raises ValueError for a message whose header dkimpy
    cannot read, or without a From."""
    if not keys:
        return message
    body_start = _body_start(message)
    try:
        headers, _ = dkim.rfc822_parse(message[:body_start])
    except dkim.MessageFormatError as exc:
        raise ValueError(f"the message cannot be signed: {exc}") from None
    names = [bytes(name).lower() for name, _ in headers]
    if b"from" not in names:
        raise ValueError("the message cannot be signed: it has no From")
    signed = [name for name in names if name in _SIGNED] + list(_OVERSIGNED)
    canonical = _POLICY.canonicalize_headers(headers)
    body_hash = base64.b64encode(body_digest(message, body_start))
    newline = b"\r\n" if message[:message.find(b"\n")].endswith(b"\r") else b"\n"
    timestamp = calendar.timegm(now.timetuple())
    fields = b"".join(_one(key, canonical, signed, body_hash, timestamp, newline) for key in keys)
    return fields + message


def _body_start(message: bytes | bytearray) -> int:
    """Where the body begins: after the first empty line (the end of the message if there is none)."""
    crlf = message.find(b"\n\r\n")
    lf = message.find(b"\n\n", 0, crlf if crlf >= 0 else len(message))  # never past the CRLF one
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else len(message)


def body_digest(message: bytes | bytearray, start: int, chunk: int = 64 * 1024) -> bytes:
    """SHA-256 of the body (`message[start:]`) in relaxed canonical form (RFC 6376 3.4.4), worked
    through in pieces of whole lines with dkimpy's own steps. On the whole body at once each step
    is one long call that holds the interpreter (a second or so for a 25 MB forward, with the event
    loop waiting); between pieces other threads run.

    Every step is local to a line except dropping the empty lines at the end, so a run of empty
    lines is held back until something follows it; the body then ends with exactly one CRLF (an
    empty body hashes as nothing)."""
    digest = hashlib.sha256()
    pending, seen, position = b"", False, start
    while position < len(message):
        cut = message.find(b"\n", position + chunk)
        end = len(message) if cut < 0 else cut + 1
        piece = _LINE_END.sub(b"\r\n", message[position:end])  # bare LF as dkimpy reads it: CRLF
        position = end
        text = compress_whitespace(strip_trailing_whitespace(piece))
        content = len(text)
        while text.endswith(b"\r\n", 0, content):
            content -= 2
        if content:
            digest.update(pending)
            digest.update(text[:content])
            pending, seen = text[content:], True
        else:
            pending += text
    if seen:
        digest.update(b"\r\n")
    return digest.digest()


def _one(key: Key, canonical: list[tuple[bytes, bytes]], signed: list[bytes], body_hash: bytes, timestamp: int,
         newline: bytes) -> bytes:
    """One DKIM-Signature field, laid out by hand (tags a line each where long, b= last on lines of
    its own): the hashed form and the sent form differ only in b='s value."""
    fold = newline + b" "
    h_tag = _folded(b"h=" + b":".join(signed), fold, b":")
    tags = [b"v=1; a=" + key.algorithm.encode() + b"; c=" + CANONICALIZATION + b";",
            b"d=" + key.domain.encode() + b"; s=" + key.selector.encode() + b"; t=" + str(timestamp).encode() + b";",
            h_tag + b";", b"bh=" + body_hash + b";", b"b="]
    value = b" " + fold.join(tags)
    digest = hashlib.sha256()
    dkim.hash_headers(digest, _POLICY, canonical, signed, (b"DKIM-Signature", value + newline), {})
    signature = base64.b64encode(_signature(key.private, digest.digest()))
    return b"DKIM-Signature:" + value + fold.join(signature[i:i + 72] for i in range(0, len(signature), 72)) + newline


def _signature(key: PrivateKey, digest: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over the SHA-256 digest, or Ed25519 over the digest itself (RFC 8463 3)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(digest)
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def _folded(text: bytes, fold: bytes, separator: bytes, width: int = 70) -> bytes:
    """`text` broken after `separator`s into lines of about `width` (folding white space is allowed
    around h='s colons)."""
    lines: list[bytes] = []
    line = b""
    for part in text.split(separator):
        piece = part if not line else separator + part
        if line and len(line) + len(piece) > width:
            lines.append(line + separator)
            line = part
        else:
            line += piece
    return fold.join([*lines, line])
