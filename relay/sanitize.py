"""Turning a party's message into the forward the other party receives (pure: bytes in, bytes out).

The sender's identity is removed rather than filtered: the forward's headers are the relay's own
(an allowlist keeps only Subject and the MIME structure), every text part at any depth has the
sender's address replaced by the relay address that stands for them, and a final scan of the
encoded result refuses the message if any form of the address survived. A message that cannot be
processed safely raises Unprocessable and is refused at DATA time, never forwarded half-cleaned.
"""

from __future__ import annotations

import email.errors
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser

from . import redact
from .compose import PARSE_POLICY, Addressing, message_ids, set_headers, to_bytes


class Unprocessable(Exception):
    """The message cannot be forwarded safely; the reason goes to the log, not to the sender."""


# Headers kept on each MIME part (the root gets its own addressing headers from the relay).
_PART_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition",
                           "content-id", "content-description", "content-language", "mime-version"})
_ROOT_HEADERS = _PART_HEADERS | {"subject"}


@dataclass(frozen=True)
class Route:
    """Everything the sanitiser needs to know about one forward."""

    hidden: tuple[str, ...]          # real addresses of the sender that must not reach the recipient
    alias: str                       # the relay address that stands for the sender
    sender_name: str                 # the sender's public name ("Max M.")
    platform_name: str
    recipient: str                   # the recipient's real address
    message_id: str
    date: datetime
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def parse(raw: bytes) -> EmailMessage:
    """Parse leniently (real mail is often malformed); defects are judged later, not here."""
    try:
        return BytesParser(policy=PARSE_POLICY).parsebytes(raw)
    except (email.errors.MessageError, ValueError, LookupError, RecursionError) as exc:
        raise Unprocessable(f"unparseable message: {exc}") from exc


def header_addresses(msg: EmailMessage, name: str) -> list[str]:
    """Addresses in a header such as From, lowercased; [] if absent or unparseable."""
    try:
        header = msg.get(name)
        if header is None:
            return []
        return [a.addr_spec.lower() for a in getattr(header, "addresses", ()) if a.addr_spec]
    except (email.errors.MessageError, ValueError, IndexError, AttributeError):
        return []


def referenced_ids(msg: EmailMessage) -> tuple[list[str], list[str]]:
    """(In-Reply-To ids, References ids) of a party's message, for thread mapping."""
    try:
        return message_ids(str(msg.get("In-Reply-To", ""))), message_ids(str(msg.get("References", "")))
    except (email.errors.MessageError, ValueError, IndexError):
        return [], []


def own_message_id(msg: EmailMessage) -> str | None:
    """The message's own Message-ID (kept only to map the other party's replies back to it)."""
    try:
        found = message_ids(str(msg.get("Message-ID", "")))
    except (email.errors.MessageError, ValueError, IndexError):
        return None
    return found[0] if found else None


def forward(msg: EmailMessage, route: Route) -> bytes:
    """The forward of `msg` along `route`, as bytes ready for SMTP. Raises Unprocessable."""
    replacements = {address: route.alias for address in route.hidden}
    try:
        for part in msg.walk():
            _clean_part(part, replacements, root=part is msg)
        if "MIME-Version" not in msg:
            msg["MIME-Version"] = "1.0"
        set_headers(msg, Addressing(from_name=f"{route.sender_name} via {route.platform_name}",
                                    from_address=route.alias, to_address=route.recipient,
                                    reply_to=route.alias),
                    route.message_id, route.date, route.in_reply_to, route.references)
        output = to_bytes(msg)
    except Unprocessable:
        raise
    except (email.errors.MessageError, ValueError, LookupError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeError, RecursionError) as exc:
        raise Unprocessable(f"cannot rebuild message: {type(exc).__name__}: {exc}") from exc
    for address in route.hidden:
        if leaks(output, address):
            raise Unprocessable("an encoded form of the sender's address survived sanitising")
    return output


def _clean_part(part: EmailMessage, replacements: dict[str, str], root: bool) -> None:
    allowed = _ROOT_HEADERS if root else _PART_HEADERS
    for name in {k.lower() for k in part}:
        if name not in allowed:
            del part[name]
            continue
        values = part.get_all(name) or []
        cleaned = [redact.replace_all(str(v), replacements) for v in values]
        if cleaned != [str(v) for v in values]:
            del part[name]
            for value in cleaned:
                part[name] = value
    if not part.is_multipart() and part.get_content_maintype() == "text":
        _clean_text(part, replacements)


def _clean_text(part: EmailMessage, replacements: dict[str, str]) -> None:
    text = decoded_text(part)
    cleaned = redact.replace_all(text, replacements)
    if cleaned == text:
        return
    subtype = part.get_content_subtype()
    disposition = part.get("Content-Disposition")
    filename = part.get_filename()
    part.set_content(cleaned, subtype=subtype, charset="utf-8",
                     disposition=str(disposition).split(";")[0] if disposition else None,
                     filename=filename)
    del part["MIME-Version"]


def decoded_text(part: EmailMessage) -> str:
    """A text part's content as str; an unknown charset falls back to UTF-8 with replacement."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def leaks(raw: bytes, address: str) -> bool:
    """Whether `address` appears in `raw` as bytes, in a decoded header, or in a decoded part."""
    if redact.contains_address(raw.decode("latin-1"), address):
        return True
    msg = parse(raw)
    for part in msg.walk():
        for name, value in part.items():
            if redact.contains_address(f"{name}: {value}", address):
                return True
        if not part.is_multipart() and redact.contains_address(
                decoded_text(part), address):
            return True
    return False
