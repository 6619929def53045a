"""Messages hidden inside an encoding, taken out so they are cleaned like the rest (pure: a parsed
message is changed in place).

- `message/*` parts whose body is base64 or quoted-printable as a whole. RFC 2046 forbids it for
  message/rfc822 (RFC 6532 allows it for message/global), but web mailers, mail libraries and old
  mobile clients write it, and Thunderbird and Outlook decode it. The standard parser reads such a
  body as a message without headers whose text is the encoding, so nothing in it would be cleaned
  and the scan would see only base64. The body is decoded and parsed again.
- Opaque S/MIME signatures (`application/pkcs7-mime; smime-type=signed-data`): the signed MIME
  entity sits inside the signature's DER structure, next to certificates that name the signer. The
  entity replaces the part; the signature is dropped (the caller adds the note).
"""

from __future__ import annotations

import binascii
import quopri
import re
from email.errors import MissingHeaderBodySeparatorDefect
from email.message import MIMEPart

from asn1crypto import cms

from relay.core.compose import PARSE_POLICY, parse_bytes

_REGENERATE = PARSE_POLICY.clone(linesep="\n", refold_source="none")
_SIGNED_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_MAX_LEVELS = 20


class TooDeep(ValueError):
    """Encodings inside encodings, deeper than any mail client writes them."""


def unwrap(part: MIMEPart, level: int = 0) -> list[str]:
    """Decode encoded message parts and open opaque signatures in `part` and below, in place;
    returns what was removed ("signature" for each signature). On the way, a transfer encoding
    written with something after it (`quoted-printable (x)`, `base64;`), which the email package
    would not decode but mail clients do, is written as the bare word."""
    if level > _MAX_LEVELS:
        raise TooDeep(f"content wrapped more than {_MAX_LEVELS} levels deep")
    _tidy_transfer_encoding(part)
    removed: list[str] = []
    declared = _declared_type(part)
    if "pkcs7-mime" in declared and part.get_content_type() in _SIGNED_TYPES:
        entity = signed_content(part)
        if entity is not None:
            _take_content(part, entity)
            removed.append("signature")
            declared = _declared_type(part)
    if declared.startswith("message/") and _transfer_encoding(part) in ("base64", "quoted-printable") \
            and part.get_content_maintype() == "message":
        _decode_message(part)
    payload = part.get_payload()
    if isinstance(payload, list):
        for child in payload:
            if isinstance(child, MIMEPart):
                removed += unwrap(child, level + 1)
    return removed


def _declared_type(part: MIMEPart) -> str:
    """The Content-Type as written, lowercased (or the default type: message/rfc822 in a digest),
    read without the email package's header parser, which is slow, to rule most parts out; what
    looks like a candidate is confirmed by the parsed type."""
    for name, value in part.raw_items():
        if name.lower() == "content-type":
            return str(value).strip().lower()
    return str(part.get_default_type())


_ENCODINGS = ("base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "uuencode", "x-uue")


def _tidy_transfer_encoding(part: MIMEPart) -> None:
    written = next((str(v) for k, v in part.raw_items() if k.lower() == "content-transfer-encoding"), None)
    if written is None:
        return
    word = written.strip().lower()
    first = re.split(r"[\s;(]", word, maxsplit=1)[0]
    if word != first and first in _ENCODINGS:
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = first


def _transfer_encoding(part: MIMEPart) -> str:
    return str(part.get("Content-Transfer-Encoding", "")).strip().lower()


def encoded_body(part: MIMEPart) -> bytes:
    """The body of a `message/*` part as it was written. The parser split it into a message (or
    header blocks); written again without refolding it is the original text, except that the
    generator puts a blank line after headers that had none: an inner message whose first lines
    looked like headers and then broke off (quoted-printable wraps long header lines) gets the
    line it did not have removed again."""
    written = part.as_bytes(policy=_REGENERATE).split(b"\n\n", 1)
    body = written[1] if len(written) == 2 else b""
    payload = part.get_payload()
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], MIMEPart):
        inner = payload[0]
        if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in inner.defects):
            head = b"".join(_REGENERATE.fold_binary(name, value) for name, value in inner.raw_items())
            if head and body.startswith(head + b"\n"):
                body = head + body[len(head) + 1:]
    return body


def decoded_body(part: MIMEPart) -> bytes:
    """The bytes a `message/*` part's transfer encoding stands for."""
    body = encoded_body(part)
    if _transfer_encoding(part) == "base64":
        return binascii.a2b_base64(body)  # not strict: line breaks and stray characters are skipped
    return quopri.decodestring(body)


def _decode_message(part: MIMEPart) -> None:
    data = decoded_body(part)
    # the parser reads the decoded body as it reads that type anywhere (a message, header blocks)
    wrapper = parse_bytes(f"Content-Type: {part.get_content_type()}\r\n\r\n".encode() + data)
    part.set_payload(wrapper.get_payload())
    del part["Content-Transfer-Encoding"]
    if not data.isascii():
        part["Content-Transfer-Encoding"] = "8bit"


def signed_content(part: MIMEPart) -> MIMEPart | None:
    """The MIME entity an opaque S/MIME signature carries, or None when the part is not one (an
    encrypted part, a certificate bundle, something unreadable: those are judged as they are)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        return None
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            return None
        content = info["content"]["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(content, bytes) or not content.strip():
        return None  # a detached signature or a bundle of certificates: nothing inside to forward
    return parse_bytes(content)


def _take_content(part: MIMEPart, entity: MIMEPart) -> None:
    """Make `part` the entity: its content headers and body; other headers (a root message's From,
    Subject) stay."""
    for name in {key.lower() for key in part if key.lower().startswith("content-")}:
        del part[name]
    for name, value in entity.raw_items():
        if name.lower().startswith("content-"):
            part.set_raw(name, value)
    part.set_payload(entity.get_payload())
