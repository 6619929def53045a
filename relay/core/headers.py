"""What a party's message says about itself in its headers: who it is from, whom it copies, which
messages it answers (pure: a parsed message in, values out).

Read once per message (`read`): the standard library's structured header parser is the slowest
step of reading a message, and the intake needs From for the sender check, for the addresses to
hide and for the display names to replace. Message ids are taken from the raw header text, which
is all an id is.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from relay.core.compose import PARSE_ERRORS, message_ids

Mailbox = tuple[str, str]  # (address, lowercased; display name)

SENDER_HEADERS = ("From", "Sender", "Reply-To")


@dataclass(frozen=True)
class Said:
    """The sender-, copy- and thread-related headers of one message, parsed."""

    senders: dict[str, list[Mailbox]]  # From, Sender and Reply-To by name, each possibly empty
    copies: int                        # recipients in Cc and Bcc (never relayed)
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]

    def addresses(self, name: str) -> list[str]:
        return [address for address, _ in self.senders[name]]

    def sender_addresses(self) -> list[str]:
        """Every address the message names its sender by, From first, without repeats."""
        return list(dict.fromkeys(address for name in SENDER_HEADERS for address in self.addresses(name)))

    def display_names(self) -> list[str]:
        return [display for name in SENDER_HEADERS for _, display in self.senders[name] if display]


def read(msg: EmailMessage) -> Said:
    own = ids(msg, "Message-ID")
    return Said(senders={name: mailboxes(msg, name) for name in SENDER_HEADERS},
                copies=len(mailboxes(msg, "Cc")) + len(mailboxes(msg, "Bcc")),
                message_id=own[0] if own else None,
                in_reply_to=ids(msg, "In-Reply-To"), references=ids(msg, "References"))


def addresses(msg: EmailMessage, name: str) -> list[str]:
    """Addresses in a header such as From, lowercased; [] if absent or unparseable."""
    return [address for address, _ in mailboxes(msg, name)]


def mailboxes(msg: EmailMessage, name: str) -> list[Mailbox]:
    if name not in msg:
        return []
    try:
        header = msg.get(name)
        found = getattr(header, "addresses", ())
        return [(utf8(a.addr_spec).lower(), utf8(a.display_name)) for a in found if a.addr_spec]
    except PARSE_ERRORS:
        return []


def utf8(text: str) -> str:
    """Header text the parser read from 8-bit bytes (a UTF-8 header, RFC 6532, as SMTPUTF8 clients
    write them) holds those bytes as surrogate escapes; here they become the characters they are."""
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def ids(msg: EmailMessage, name: str) -> list[str]:
    """The `<id>` tokens of the first `name` header, from its raw text (ids hold no encoded words).
    Only ASCII ids count: an id in raw 8-bit bytes could be neither stored nor written into the
    other party's headers, and a message must not fail over its id (it is only for threading)."""
    wanted = name.lower()
    raw = next((value for key, value in msg.raw_items() if key.lower() == wanted), None)
    return [i for i in message_ids(raw) if i.isascii()] if isinstance(raw, str) else []
