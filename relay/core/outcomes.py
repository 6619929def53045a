"""Every way an SMTP exchange with the relay can end, in one table: the outcome's name, its SMTP reply
(code, enhanced status code, a sentence a person understands), the log event it produces, whether
it counts towards a client's unknown-recipient limit (address harvesting) and whether it is worth a
warning in the log.

Handlers return an Outcome; only this module knows what that means on the wire. That keeps the
SMTP replies consistent and lets tests assert on names rather than strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from relay.core.vocabulary import Event


@dataclass(frozen=True)
class Reply:
    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    def with_text(self, extra: str) -> str:
        """The reply with a detail appended (a queue id, say), still one line."""
        return f"{self} {extra}".strip()


class Outcome(Enum):
    ACCEPTED = "accepted"
    RECIPIENT_OK = "recipient_ok"
    FOREIGN_DOMAIN = "foreign_domain"
    UNKNOWN_ADDRESS = "unknown_address"
    CONVERSATION_CLOSED = "conversation_closed"
    REVIEWER_NOT_ANSWERED = "reviewer_not_answered"
    WRONG_SENDER = "wrong_sender"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TOO_LARGE = "too_large"
    LINE_TOO_LONG = "line_too_long"
    UNPROCESSABLE = "unprocessable"
    LATE_REPLY_REJECTED = "late_reply_rejected"
    TEMPORARY_FAILURE = "temporary_failure"
    AUTO_REPLY_DROPPED = "auto_reply_dropped"
    BOUNCE_RECORDED = "bounce_recorded"
    BOUNCE_IGNORED = "bounce_ignored"
    LOOP = "loop"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_PROBES = "too_many_probes"
    BAD_BOUNCE_ADDRESS = "bad_bounce_address"
    NULL_SENDER_REFUSED = "null_sender_refused"
    HEADER_TOO_LARGE = "header_too_large"
    TLS_REQUIRED = "tls_required"
    SHUTTING_DOWN = "shutting_down"
    BUSY = "busy"
    AUTH_FAILED = "auth_failed"
    AUTH_UNAVAILABLE = "auth_unavailable"


@dataclass(frozen=True)
class Rule:
    reply: Reply
    event: Event | None       # None: not logged (an accepted recipient)
    probe: bool = False       # a client guessing addresses: counts towards its limit
    warning: bool = False     # logged as a warning (the relay or a client is in trouble)


_TABLE: dict[Outcome, Rule] = {
    Outcome.ACCEPTED: Rule(Reply(250, "2.0.0", "Message accepted for delivery"), Event.INBOUND_ACCEPTED),
    Outcome.RECIPIENT_OK: Rule(Reply(250, "2.1.5", "Recipient OK"), None),
    Outcome.FOREIGN_DOMAIN: Rule(
        Reply(550, "5.7.1", "Relaying denied: this server only accepts mail for its own relay addresses"),
        Event.INBOUND_REFUSED, probe=True),
    Outcome.UNKNOWN_ADDRESS: Rule(
        Reply(550, "5.1.1", "No such relay address here; check the address you are writing to"),
        Event.INBOUND_REFUSED, probe=True),
    Outcome.CONVERSATION_CLOSED: Rule(
        Reply(550, "5.1.1", "This conversation is closed; the relay address no longer accepts mail"),
        Event.INBOUND_REFUSED),
    Outcome.REVIEWER_NOT_ANSWERED: Rule(
        Reply(550, "5.7.1", "The reviewer has not answered your request; "
                            "this conversation opens only with their answer"),
        Event.INBOUND_REFUSED),
    Outcome.WRONG_SENDER: Rule(
        Reply(550, "5.7.1", "Sender not allowed for this conversation; "
                            "please answer from the address that received the message"),
        Event.INBOUND_REFUSED),
    Outcome.TOO_MANY_RECIPIENTS: Rule(
        Reply(452, "4.5.3", "Too many recipients; send one message per relay address"),
        Event.INBOUND_REFUSED),
    Outcome.TOO_LARGE: Rule(
        Reply(552, "5.3.4", "Message too big for this relay"), Event.INBOUND_REFUSED),
    Outcome.LINE_TOO_LONG: Rule(
        Reply(552, "5.3.4", "A line of the message is too long for this relay"), Event.INBOUND_REFUSED),
    Outcome.HEADER_TOO_LARGE: Rule(
        Reply(552, "5.3.4", "The message header is too large (too many or too long header fields)"),
        Event.INBOUND_REFUSED),
    Outcome.UNPROCESSABLE: Rule(
        Reply(554, "5.6.0", "The message could not be processed safely and was not forwarded; "
                            "please send it again as a plain reply"),
        Event.INBOUND_REFUSED),
    Outcome.LATE_REPLY_REJECTED: Rule(
        Reply(550, "5.7.1", "The time to answer this request has passed; the answer was not forwarded"),
        Event.INBOUND_REFUSED),
    Outcome.TEMPORARY_FAILURE: Rule(
        Reply(451, "4.3.0", "Temporary problem on the relay; please try again later"),
        Event.INBOUND_DEFERRED, warning=True),
    Outcome.AUTO_REPLY_DROPPED: Rule(
        Reply(250, "2.0.0", "Automatic reply received; it is not forwarded"), Event.AUTOREPLY_DROPPED),
    Outcome.BOUNCE_RECORDED: Rule(
        Reply(250, "2.0.0", "Delivery report received"), Event.BOUNCE_RECEIVED),
    Outcome.BOUNCE_IGNORED: Rule(
        Reply(250, "2.0.0", "Message to a bounce address received; it is not forwarded"), Event.BOUNCE_IGNORED),
    Outcome.LOOP: Rule(
        Reply(554, "5.4.6", "Mail loop detected; the message was not forwarded"), Event.INBOUND_REFUSED),
    Outcome.RATE_LIMITED: Rule(
        Reply(451, "4.7.1", "Too many messages in this conversation for now; please try again later"),
        Event.INBOUND_DEFERRED),
    Outcome.TOO_MANY_PROBES: Rule(
        Reply(421, "4.7.0", "Too many unknown recipients from your address; closing the connection"),
        Event.INBOUND_REFUSED, warning=True),
    Outcome.BAD_BOUNCE_ADDRESS: Rule(
        Reply(550, "5.7.1", "Not a valid bounce address of this relay (forged or expired)"),
        Event.INBOUND_REFUSED, probe=True),
    Outcome.NULL_SENDER_REFUSED: Rule(
        Reply(550, "5.7.1", "Mail with an empty sender is only accepted at the relay's bounce addresses"),
        Event.INBOUND_REFUSED),
    Outcome.TLS_REQUIRED: Rule(
        Reply(530, "5.7.0", "Must issue a STARTTLS command first"), Event.INBOUND_REFUSED),
    Outcome.SHUTTING_DOWN: Rule(
        Reply(421, "4.3.2", "The relay is shutting down; please try again later"), Event.INBOUND_DEFERRED),
    Outcome.BUSY: Rule(
        Reply(451, "4.3.2", "Too many large messages are being processed right now; please try again later"),
        Event.INBOUND_DEFERRED, warning=True),
    Outcome.AUTH_FAILED: Rule(
        Reply(550, "5.7.26", "This message fails the DMARC policy of its sender's domain: that domain asks "
                             "to refuse mail in its name that it did not authenticate; please send it "
                             "through your own provider's mail server"), Event.INBOUND_REFUSED),
    Outcome.AUTH_UNAVAILABLE: Rule(
        Reply(451, "4.4.3", "The sender's domain could not be checked right now (a DNS look-up failed); "
                            "please try again later"), Event.INBOUND_DEFERRED, warning=True),
}


def reply(outcome: Outcome) -> Reply:
    return _TABLE[outcome].reply


def rule(outcome: Outcome) -> Rule:
    return _TABLE[outcome]


def event(outcome: Outcome) -> Event:
    """The log event of an outcome that is logged (every one but an accepted recipient)."""
    logged = _TABLE[outcome].event
    if logged is None:
        raise ValueError(f"{outcome.value} is not logged")
    return logged


# aiosmtpd answers a few conditions itself, without an enhanced status code. These are the
# relay's wording for the same conditions; the server adapter swaps them in on the way out.
_LIBRARY_REPLIES: dict[str, Outcome] = {
    "552 Error: Too much mail data": Outcome.TOO_LARGE,
    "552 Error: message size exceeds fixed maximum message size": Outcome.TOO_LARGE,
    "500 Line too long (see RFC5321 4.5.3.1.6)": Outcome.LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": Outcome.TLS_REQUIRED,
}


def translate_library_reply(line: str) -> tuple[str, Outcome | None]:
    """aiosmtpd's stock reply -> the relay's reply for the same outcome (unchanged if not known)."""
    outcome = _LIBRARY_REPLIES.get(line)
    return (str(reply(outcome)), outcome) if outcome else (line, None)
