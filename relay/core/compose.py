"""The envelope headers every message the relay sends carries, in one place (notices and forwards).

Serialisation uses the SMTP policy: CRLF line endings, lines folded at 78 characters, non-ASCII
header text as RFC 2047 words. Messages the relay writes from scratch (notices) use WRITTEN, the
same rules without the round trip through header objects.
"""

from __future__ import annotations

import email.errors
import email.policy
import functools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.feedparser import BytesFeedParser
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from relay.core import bulk_lines

OUTPUT_POLICY = email.policy.SMTP
PARSE_POLICY = email.policy.default
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
LOOP_HEADER = "X-Relay-Loop"


_FEED_CHUNK = 64 * 1024
# What the standard parser and its header objects raise on malformed mail: the one list every
# reader of untrusted headers and parts catches (a reader that catches less turns a malformed
# message into a crash, one that catches more hides bugs).
PARSE_ERRORS: tuple[type[Exception], ...] = (email.errors.MessageError, ValueError, LookupError, IndexError,
                                             TypeError, AttributeError, RecursionError)


def parse_bytes(raw: bytes) -> EmailMessage:
    """Parse a message with the standard parser, fed in chunks as it reads files, long runs of
    encoded lines set aside meanwhile (relay.core.bulk_lines).

    `BytesParser.parsebytes` decodes the whole message into one string and splits all of it into
    lines before parsing: for a 25 MB attachment that is several copies of it at once. Fed a chunk
    at a time, the parser holds only the lines of the part it is in; with the runs set aside, not
    even those."""
    return bulk_lines.parse_lean(raw, _parse_fed)


def _parse_fed(raw: bytes) -> EmailMessage:
    parser = BytesFeedParser(policy=PARSE_POLICY)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start:start + _FEED_CHUNK]))
    message = parser.close()
    assert isinstance(message, EmailMessage)
    return message


@functools.lru_cache(maxsize=256)
def _max_count(name: str) -> int | None:
    return email.policy.default.header_max_count(name)


class WrittenPolicy(EmailPolicy):
    """The SMTP policy for messages the relay composes itself.

    The default policy parses every header value into a header object when it is set, again when it
    is read, and folds it back when the message is written; for values the relay formatted itself
    (addresses through `Address`, dates, ids) that round trip is most of the cost of a notice.
    Here a single-line ASCII value is stored and written as given, unless it is too long for one
    line; anything else (non-ASCII text, header objects) takes the standard path, so encoding and
    folding stay the email package's. Values with CR or LF still go the standard path, which
    refuses them.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, str) and value.isascii() and "\r" not in value and "\n" not in value:
            return (name, value)
        return super().header_store_parse(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return super().header_fetch_parse(name, value)

    def header_max_count(self, name: str) -> int | None:
        # the default looks the header class up anew (building a class) on every assignment
        return _max_count(name.lower())


WRITTEN = WrittenPolicy(linesep="\r\n")


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def message_ids(value: str | None) -> list[str]:
    """All `<id>` tokens in an In-Reply-To / References / Message-ID value, in order."""
    return _MSGID.findall(value or "")


@dataclass(frozen=True)
class Addressing:
    """Who a relay message is from (display name and relay address) and to."""

    from_name: str
    from_address: str
    to_address: str
    to_name: str = ""
    reply_to: str | None = None


def relayed_name(name: str, platform: str) -> str:
    """The display name of everything the relay sends on a party's behalf: "Max M. via ReviewHub"
    (the recipient sees who wrote, and that it came through the platform)."""
    return f"{name} via {platform}"


def mailbox(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def set_headers(msg: EmailMessage, who: Addressing, message_id: str, date: datetime,
                in_reply_to: list[str] | None = None, references: list[str] | None = None,
                auto_submitted: bool = False) -> None:
    """Put the relay's own addressing headers on `msg` (replacing any it had)."""
    for name in ("From", "To", "Reply-To", "Message-ID", "Date", "In-Reply-To", "References",
                 "Auto-Submitted", LOOP_HEADER):
        del msg[name]
    msg["From"] = str(mailbox(who.from_name, who.from_address))
    msg["To"] = str(mailbox(who.to_name, who.to_address))
    if who.reply_to:
        msg["Reply-To"] = who.reply_to
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(date.replace(tzinfo=UTC))
    if in_reply_to:
        msg["In-Reply-To"] = " ".join(in_reply_to)
    if references:
        msg["References"] = " ".join(references)
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-generated"
    # the relay's loop marker: if this message ever comes back to the relay, it is refused
    msg[LOOP_HEADER] = who.from_address.rpartition("@")[2]


def to_bytes(msg: EmailMessage) -> bytes:
    """The message on the wire; a message composed under WRITTEN is written under it too (the
    generator reads headers through the policy it writes with)."""
    return msg.as_bytes(policy=WRITTEN if isinstance(msg.policy, WrittenPolicy) else OUTPUT_POLICY)


def new_boundary() -> str:
    """A MIME boundary for parts the relay encodes as quoted-printable: such a body never contains
    "=_" (QP writes "=" as "=3D"), so the boundary needs no scan of the content."""
    return f"=_{secrets.token_hex(12)}"
