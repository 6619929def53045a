"""The envelope headers every message the relay sends carries, in one place (notices and forwards).

Serialisation uses the SMTP policy: CRLF line endings, lines folded at 78 characters, non-ASCII
header text as RFC 2047 words.
"""

from __future__ import annotations

import email.policy
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

OUTPUT_POLICY = email.policy.SMTP
PARSE_POLICY = email.policy.default
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
LOOP_HEADER = "X-Relay-Loop"


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
    msg["From"] = mailbox(who.from_name, who.from_address)
    msg["To"] = mailbox(who.to_name, who.to_address)
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
    return msg.as_bytes(policy=OUTPUT_POLICY)
