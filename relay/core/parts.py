"""Which MIME parts a forward may carry (pure: a part in, a verdict out).

Contact cards, calendar invitations, PGP keys, S/MIME and PGP signatures and Outlook's
winmail.dat carry the sender's address (and often more: phone, postal address, key fingerprints
that name them on key servers) in forms that cannot be edited safely, so they are dropped and the
recipient is told. Encrypted content cannot be checked at all, so it is refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from email.message import MIMEPart
from enum import Enum


class Verdict(Enum):
    KEEP = "keep"
    DROP = "drop"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Removed:
    kind: str  # vcard, calendar, pgp_key, tnef, signature, embedded (no file name: it is often a name)


_BY_TYPE = {
    "text/vcard": "vcard", "text/x-vcard": "vcard", "text/directory": "vcard", "application/vcard": "vcard",
    "application/vcard+json": "vcard", "application/vcard+xml": "vcard",
    "text/calendar": "calendar", "application/ics": "calendar", "text/x-vcalendar": "calendar",
    "application/pgp-keys": "pgp_key",
    "application/ms-tnef": "tnef", "application/vnd.ms-tnef": "tnef",
    "application/pgp-signature": "signature", "application/pkcs7-signature": "signature",
    "application/x-pkcs7-signature": "signature",
}
_BY_SUFFIX = {".vcf": "vcard", ".vcard": "vcard", ".ics": "calendar", ".vcs": "calendar", ".ifb": "calendar",
              ".asc": "pgp_key", ".gpg": "pgp_key", ".pgp": "pgp_key", ".p7s": "signature",
              ".dat": "tnef"}
_BY_CONTENT = {b"BEGIN:VCARD": "vcard", b"BEGIN:VCALENDAR": "calendar",
               b"-----BEGIN PGP PUBLIC KEY BLOCK-----": "pgp_key", b"\x78\x9f\x3e\x22": "tnef"}
_SMIME = {"application/pkcs7-mime", "application/x-pkcs7-mime"}
# opaque S/MIME signatures are opened before this (relay.unwrap); what is left of the type is encrypted
_ENCRYPTED = {"multipart/encrypted", "application/pgp-encrypted", *_SMIME}


def verdict(part: MIMEPart) -> tuple[Verdict, str]:
    """KEEP, DROP with the kind of content, or REFUSE with the reason."""
    content_type = part.get_content_type()
    if content_type in _SMIME and str(part.get_param("smime-type", "")).lower() == "certs-only":
        return Verdict.DROP, "signature"  # a bundle of certificates: they name their owner
    if content_type in _ENCRYPTED:
        return Verdict.REFUSE, f"encrypted content ({content_type}) cannot be checked"
    if part.is_multipart() or content_type == "message/rfc822":
        return Verdict.KEEP, ""
    kind = _BY_TYPE.get(content_type) or _by_filename(part)
    if not kind and content_type not in ("text/plain", "text/html"):
        kind = _by_content(part)  # a card or key sent as application/octet-stream
    return (Verdict.DROP, kind) if kind else (Verdict.KEEP, "")


def _by_filename(part: MIMEPart) -> str | None:
    name = (part.get_filename() or "").strip().lower()
    if name == "winmail.dat":
        return "tnef"
    for suffix, kind in _BY_SUFFIX.items():
        if name.endswith(suffix) and suffix != ".dat":
            return kind
    return None


def _head(part: MIMEPart, size: int = 4096) -> bytes:
    """The first bytes of a part's content, decoding only as much as that needs (a 20 MB
    attachment is not decoded whole just to look at its start)."""
    encoded = part.get_payload(decode=False)
    if not isinstance(encoded, str):
        return b""
    if (part.get("Content-Transfer-Encoding") or "").strip().lower() == "base64":
        chunk = "".join(encoded[: size * 2].split())
        try:
            return base64.b64decode(chunk[: len(chunk) // 4 * 4])[:size]
        except (binascii.Error, ValueError):
            pass
    payload = part.get_payload(decode=True)
    return payload[:size] if isinstance(payload, bytes) else b""


def _by_content(part: MIMEPart) -> str | None:
    head = _head(part).lstrip()
    for marker, kind in _BY_CONTENT.items():
        if head.startswith(marker) or (kind != "tnef" and marker in head):
            return kind
    return None
