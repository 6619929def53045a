"""Turning a party's message into the forward the other party receives (pure: bytes in, bytes out).

The sender's identity is removed rather than filtered:

- headers: an allowlist at every MIME level (nested messages included); the forward's addressing
  headers are the relay's own;
- text: in every text/plain and text/html part at any depth, whatever its charset and transfer
  encoding, the sender's address is replaced by the relay address that stands for them (plain,
  URL-encoded, entity-encoded), and the name their client wrote into quoted-reply attribution lines
  by their public name; HTML to a reviewer loses its remote references (tracking);
- parts: contact cards, calendar invitations, keys, signatures and winmail.dat are dropped, with a
  one-line note; encrypted content is refused;
- last, the encoded result is scanned for every form of the address; if one survived, the message
  is refused (Unprocessable), never forwarded half-cleaned.

Large attachments (documents, images) are not changed by any of this, so their encoded text is
set aside while the forward is written and put back into the written bytes (`_PassThrough`): the
standard generator would otherwise split megabytes of base64 into line objects and copy it several
times. The final scan still reads them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from typing import Any

from relay.core import (
    addresses,
    attribution,
    charsets,
    headers,
    inline,
    leaks,
    markup,
    parts,
    redact,
    remote_content,
    unwrap,
)
from relay.core.charsets import decoded_text
from relay.core.compose import WRITTEN, Addressing, parse_bytes, relayed_name, set_headers, to_bytes


class Unprocessable(Exception):
    """The message cannot be forwarded safely; the reason goes to the log, not to the sender."""


_PART_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition",
                           "content-id", "content-description", "content-language", "content-location",
                           "mime-version"})
_ROOT_HEADERS = _PART_HEADERS | {"subject"}
_NESTED_HEADERS = _PART_HEADERS | {"subject", "date"}
# Real replies have a handful of parts; thousands of parts or deep nesting is an attack on the
# relay's time (each part is parsed, cleaned and scanned), not a message someone wrote.
MAX_PARTS = 250
MAX_DEPTH = 20


def english_note(removed: Sequence[parts.Removed]) -> str:
    """The note when no template is at hand. File names are left out: they often are a name."""
    kinds = ", ".join(dict.fromkeys(r.kind for r in removed))
    return f"[The relay removed attachments ({kinds}) that can reveal the sender's e-mail address.]"


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
    block_remote: bool = False       # True towards reviewers: no tracking pixels
    note: Callable[[Sequence[parts.Removed]], str] = english_note
    extra_notes: tuple[str, ...] = ()  # lines the relay adds (a late answer, say)


@dataclass
class _Work:
    route: Route
    replacements: dict[str, str]
    names: list[str]
    hidden: tuple[str, ...]          # every spelling of the sender's addresses
    removed: list[parts.Removed] = field(default_factory=list)


def parse(raw: bytes) -> EmailMessage:
    """Parse leniently (real mail is often malformed); defects are judged later, not here."""
    try:
        return parse_bytes(raw)
    except Exception as exc:  # whatever the parser trips over, the sender is told 554, never 451
        raise Unprocessable(f"unparseable message: {redact.describe(exc)}") from exc


def forward(msg: EmailMessage, route: Route, said: headers.Said | None = None) -> bytes:
    """The forward of `msg` along `route`, as bytes ready for SMTP. Raises Unprocessable, and
    nothing else: any exception while cleaning, writing or scanning means the message cannot be
    forwarded safely, which the sender is told at once (554), never "try again later".
    `said`: the message's headers as the caller already read them (relay.headers)."""
    hidden = tuple(dict.fromkeys(s for address in route.hidden for s in addresses.spellings(address)))
    try:
        written, aside = _rebuild(msg, route, hidden, said)
        found = leaks.found(written, *hidden) or \
            any(leaks.found_in_leaf(leaf, *hidden) for _, leaf in aside.payloads)
    except Unprocessable:
        raise
    except Exception as exc:
        raise Unprocessable(f"cannot rebuild message: {redact.describe(exc)}") from exc
    if found:
        raise Unprocessable("an encoded form of the sender's address survived sanitising")
    return aside.put_back(written)


def _rebuild(msg: EmailMessage, route: Route, hidden: tuple[str, ...],
             said: headers.Said | None) -> tuple[bytes, _PassThrough]:
    """The cleaned message written out, its large attachments set aside."""
    _check_structure(msg)
    opened = unwrap.unwrap(msg)
    _check_structure(msg)
    names = (said or headers.read(msg)).display_names()
    work = _Work(route, {address: route.alias for address in hidden}, names, hidden)
    work.removed.extend(parts.Removed(kind=kind) for kind in opened)
    _clean(msg, work, allowed=_ROOT_HEADERS)
    lines = [*route.extra_notes, *([route.note(work.removed)] if work.removed else [])]
    if lines:
        _add_note(msg, "\n".join(lines), route.message_id)
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"
    # the relay's own headers are values it formatted itself: stored and written as they are
    # (compose.WrittenPolicy), not parsed into header objects and folded back
    msg.policy = WRITTEN
    set_headers(msg, Addressing(from_name=relayed_name(route.sender_name, route.platform_name),
                                from_address=route.alias, to_address=route.recipient,
                                reply_to=route.alias),
                route.message_id, route.date, route.in_reply_to, route.references)
    aside = _PassThrough.set_aside(msg)
    return to_bytes(msg), aside


PASS_THROUGH_CHARS = 256 * 1024


def _crlf(data: bytes) -> bytes:
    """Every line ending (CRLF, CR or LF) as CRLF, as the generator writes them; a copy only when
    something changes, and no per-line objects (these are megabytes)."""
    crlf, lf, cr = data.count(b"\r\n"), data.count(b"\n"), data.count(b"\r")
    if crlf == lf == cr:
        return data
    if cr == 0:
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@dataclass
class _PassThrough:
    """Encoded payloads of large non-text parts, taken out of the message before it is written
    and put back into the bytes, exactly as the generator would have written them (each line
    ending, CR, LF or CRLF, as CRLF)."""

    # (marker as written, the part as it was: its headers and encoded payload, for the final scan)
    payloads: list[tuple[bytes, MIMEPart]] = field(default_factory=list)

    @classmethod
    def set_aside(cls, msg: EmailMessage) -> _PassThrough:
        aside = cls()
        for part in msg.walk():
            if part.is_multipart() or part.get_content_maintype() in ("text", "message"):
                continue
            payload = part.get_payload()
            if not isinstance(payload, str) or len(payload) < PASS_THROUGH_CHARS or not payload.isascii():
                continue  # small, or 8-bit content the generator treats specially: the normal path
            leaf = MIMEPart(policy=part.policy)
            for name, value in part.raw_items():
                leaf.set_raw(name, value)
            leaf.set_payload(payload)
            marker = f"relay-pass-through-{secrets.token_hex(16)}"
            ends_line = payload.endswith(("\n", "\r"))
            part.set_payload(marker + ("\n" if ends_line else ""))
            aside.payloads.append(((marker + ("\r\n" if ends_line else "")).encode(), leaf))
        return aside

    def put_back(self, written: bytes) -> bytes:
        while self.payloads:
            marker, leaf = self.payloads.pop()
            before, found, after = written.partition(marker)
            if not found:
                raise Unprocessable("an attachment could not be put back into the forward")
            payload = leaf.get_payload()
            assert isinstance(payload, str)
            encoded = payload.encode("ascii")
            del payload, leaf
            encoded = _crlf(encoded)
            written = b"".join((before, encoded, after))
        return written


def _check_structure(msg: EmailMessage) -> None:
    for count, _ in enumerate(msg.walk(), start=1):
        if count > MAX_PARTS:
            raise Unprocessable(f"more than {MAX_PARTS} MIME parts")
    if _depth(msg) > MAX_DEPTH:
        raise Unprocessable(f"MIME parts nested deeper than {MAX_DEPTH} levels")


def _depth(part: MIMEPart) -> int:
    payload = part.get_payload()
    if not isinstance(payload, list) or not payload:
        return 0
    return 1 + max((_depth(child) for child in payload if isinstance(child, MIMEPart)), default=0)


def _clean(part: MIMEPart, work: _Work, allowed: frozenset[str]) -> None:
    _clean_headers(part, work, allowed)
    # the text before and after a multipart's parts is for readers that know no MIME; nobody
    # wrote it for the recipient, and nothing in it is cleaned
    part.preamble = part.epilogue = None
    if part.get_content_type() == "message/rfc822" or part.get_content_maintype() == "message":
        for inner in part.get_payload() if isinstance(part.get_payload(), list) else []:
            if isinstance(inner, MIMEPart):
                _clean(inner, work, _NESTED_HEADERS)
        return
    if part.is_multipart():
        _clean_children(part, work)
    elif part.get_content_maintype() == "text":
        _clean_text(part, work)
    else:  # a leaf that is a whole message (or a nested message's body): judged as a part is
        _check_whole(part)


def _check_whole(part: MIMEPart) -> None:
    verdict, why = parts.verdict(part)
    if verdict is parts.Verdict.REFUSE:
        raise Unprocessable(why)
    if verdict is parts.Verdict.DROP:
        raise Unprocessable(f"the message consists only of content that cannot be forwarded ({why})")


def _clean_children(part: MIMEPart, work: _Work) -> None:
    kept: list[Any] = []
    dropped_signature = False
    for child in part.iter_parts():
        verdict, why = parts.verdict(child)
        if verdict is parts.Verdict.REFUSE:
            raise Unprocessable(why)
        if verdict is parts.Verdict.DROP:
            work.removed.append(parts.Removed(kind=why))
            dropped_signature |= why == "signature"
            continue
        _clean(child, work, _PART_HEADERS)
        kept.append(child)
    part.set_payload(kept)
    if part.get_content_subtype() == "signed" and dropped_signature:
        # without its signature a multipart/signed is an ordinary multipart
        part.set_type("multipart/mixed")
        for param in ("protocol", "micalg"):
            part.del_param(param)


def _clean_headers(part: MIMEPart, work: _Work, allowed: frozenset[str]) -> None:
    for name in {k.lower() for k in part}:
        if name not in allowed:
            del part[name]
            continue
        values = [str(v) for v in part.get_all(name) or []]
        if len(values) > 1 and name != "content-description":
            # one Content-Type (or Subject...) only: the first is what was parsed and cleaned; a
            # client that reads the second would see something else
            values = values[:1]
            del part[name]
            part[name] = values[0]
        cleaned = [redact.replace_all(v, work.replacements) for v in values]
        if cleaned != values:
            del part[name]
            for value in cleaned:
                part[name] = value


def _clean_text(part: MIMEPart, work: _Work) -> None:
    _check_whole(part)  # a card as the whole message (children were judged by their parent)
    text = decoded_text(part)
    subtype = part.get_content_subtype()
    rendered = subtype in markup.MARKUP_SUBTYPES
    stripped = inline.strip(text, rendered, work.hidden)
    work.removed.extend(parts.Removed(kind=kind) for kind in stripped.removed)
    work.names.extend(attribution.names_beside(markup.visible_text(text) if rendered else text, work.hidden))
    cleaned = redact.replace_all(stripped.text, work.replacements)
    if rendered:
        cleaned = markup.replace_rendered(cleaned, work.replacements)
        cleaned = attribution.replace_in_html(cleaned, work.names, work.route.sender_name)
        if work.route.block_remote:
            try:
                cleaned = remote_content.block_remote(cleaned).html
            except remote_content.UnparseableHtml as exc:
                raise Unprocessable(str(exc)) from exc
    else:
        cleaned = attribution.replace_in_plain(cleaned, work.names, work.route.sender_name)
    if cleaned == text and not _needs_rewrite(part):
        return
    disposition = part.get_content_disposition()
    filename = part.get_filename()
    content_id = part.get("Content-ID")
    part.set_content(cleaned, subtype=subtype, charset="utf-8", disposition=disposition,
                     filename=filename, cid=str(content_id) if content_id else None)
    del part["MIME-Version"]


def _needs_rewrite(part: MIMEPart) -> bool:
    """A part whose bytes say another charset than it declares (a byte-order mark, UTF-16 without
    a charset) is written anew in UTF-8 even when nothing in it changed: the recipient's client
    would otherwise show it as the sender's client did not mean it, and the scan reads what it says."""
    payload = part.get_payload(decode=True)
    return isinstance(payload, bytes) and charsets.sniffed(payload, part.get_content_charset()) is not None


def _add_note(msg: EmailMessage, note: str, message_id: str) -> None:
    if msg.get_content_type() != "multipart/mixed":
        if not any(name.lower().startswith("content-") for name in msg):
            # a message without MIME headers is text/plain (RFC 2045); make_mixed() moves only
            # Content-* headers into the first part and drops a body that has none
            msg["Content-Type"] = "text/plain"
        msg.make_mixed()
        # a boundary derived from the forward's id keeps the output reproducible (golden files)
        msg.set_boundary("=_relay_" + hashlib.sha256(message_id.encode()).hexdigest()[:24])
    notice = EmailMessage()
    notice.set_content(note + "\n", charset="utf-8", disposition="inline")
    del notice["MIME-Version"]
    msg.attach(notice)
