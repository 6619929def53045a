"""Who may send what to which relay address (pure: values in, an Outcome out).

This is where the relay stops being an open relay: an envelope recipient must be a relay address
at the relay's own domain, belong to a live case, come alone in its transaction, and the message
must come from the party that owns the address. And the reviewer opens the conversation: until
they have answered, the contact request is the business's one message, and the business's relay
address refuses mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from relay.core import addresses
from relay.core.cases import accepts_mail
from relay.core.outcomes import Outcome
from relay.core.vocabulary import Conversation, Party, State


def is_relay_domain(address: str, domain: str) -> bool:
    return addresses.split(address)[1] == domain.lower()


def check_recipient_count(tried: int, max_recipients: int, accepted: bool) -> Outcome | None:
    """The transaction's recipients so far: at most `max_recipients` RCPT commands, and one relay
    address accepted (each goes to another party: one transaction, one recipient; ADR 4). None
    when this one may be looked at."""
    if tried > max_recipients or accepted:
        return Outcome.TOO_MANY_RECIPIENTS
    return None


def check_recipient(address: str, domain: str, conversation: Conversation | None, now: datetime,
                    lifetime: timedelta, envelope_from: str) -> Outcome:
    """The answer to RCPT TO. `conversation` is what the address's local part resolved to."""
    if not is_relay_domain(address, domain):
        return Outcome.FOREIGN_DOMAIN
    if conversation is None:
        return Outcome.UNKNOWN_ADDRESS
    if conversation.state is State.CLOSED or now - conversation.last_activity_at > lifetime:
        return Outcome.CONVERSATION_CLOSED
    if waits_for_reviewer(conversation):
        return Outcome.REVIEWER_NOT_ANSWERED  # also after expiry or a decline without an answer
    if not accepts_mail(conversation.state, conversation.last_activity_at, now, lifetime):
        return Outcome.CONVERSATION_CLOSED  # declined
    if addresses.is_null_sender(envelope_from):
        return Outcome.NULL_SENDER_REFUSED  # reports go to the bounce addresses, never to a party
    return Outcome.RECIPIENT_OK


def waits_for_reviewer(conversation: Conversation) -> bool:
    """The business's relay address before the reviewer has written: the business asked once (the
    contact request) and may not follow it up with more mail until the reviewer answers, however
    the case goes on (awaiting, expired or declined). Decided at RCPT, from the case's stored
    messages, so a late answer opens the conversation as well."""
    return conversation.writer is Party.BUSINESS and not conversation.reviewer_answered


def check_sender(conversation: Conversation, envelope_from: str, header_from: Iterable[str],
                 late_replies: str, now: datetime) -> Outcome:
    """The answer to DATA as far as the sender is concerned.

    Either the envelope sender or an address in From must be the owner's registered address;
    forwarding services rewrite the envelope sender, so From alone is enough. An internationalised
    domain counts in either spelling (Unicode or ASCII).
    """
    owner = conversation.writer_email
    if owner is None:
        return Outcome.WRONG_SENDER
    candidates = {addresses.canonical(envelope_from), *(addresses.canonical(a) for a in header_from)}
    if addresses.canonical(owner) not in candidates:
        return Outcome.WRONG_SENDER
    if late_replies == "reject" and conversation.late(now):
        return Outcome.LATE_REPLY_REJECTED
    return Outcome.ACCEPTED


def map_thread_ids(ids: Iterable[str], writer: Party, domain: str,
                   known: dict[str, tuple[Party, Party | None, str | None]]) -> list[str]:
    """Rewrite a party's In-Reply-To/References so both parties keep their threads.

    `known` maps a relay Message-ID to (party it was sent to, party whose message it forwarded,
    that message's original Message-ID). An id the relay sent to this writer that forwarded the
    other party's message becomes that message's original id (the reader's own id, which the reader
    already knows). Other relay ids stay; foreign ids are dropped, since they may hold an address.
    """
    out: list[str] = []
    for message_id in ids:
        entry = known.get(message_id)
        if entry and entry[0] is writer and entry[1] is writer.other and entry[2]:
            mapped = entry[2]
        elif message_id.rstrip(">").lower().endswith("@" + domain.lower()):
            mapped = message_id
        else:
            continue
        if mapped not in out:
            out.append(mapped)
    return out
