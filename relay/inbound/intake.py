"""What happens to one inbound message after DATA: decide, sanitise, store with its outbox entry.

Runs in a worker thread (parsing and the database block). Returns the outcome; the SMTP adapter
turns it into the reply. Nothing is answered 250 before the forward is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay import logs
from relay.app import App
from relay.core import classify, headers, limits, notices, outcomes, policy, sanitize
from relay.core.compose import new_message_id
from relay.core.outcomes import Outcome
from relay.core.vocabulary import Conversation, Event, Mail, Party, State
from relay.lifecycle import jobs as lifecycle
from relay.store import bodies, events, outbox
from relay.store import case_records as case_store
from relay.store import transitions as lifecycle_store
from relay.store.database import StorageError


@dataclass(frozen=True)
class Result:
    """What became of one message; the SMTP adapter answers with the outcome's reply and writes
    the one log line about it (`level`: a permanent bounce is worth a warning)."""

    outcome: Outcome
    queue_id: str | None = None
    detail: str = ""
    level: int = logging.INFO


class Incoming:
    """A received message handed to the intake, which lets go of it once it is parsed: the forward
    is built from the parsed message, and the bytes the client sent (25 MB, say) need not stay in
    memory beside the forward while it is sanitised, sealed and stored. Whoever hands it over keeps
    no other reference."""

    def __init__(self, raw: bytes) -> None:
        self._raw: bytes | None = raw
        self.size = len(raw)

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            raise RuntimeError("the message was let go after it was parsed")
        return self._raw

    def release(self) -> None:
        self._raw = None


def lookup(app: App, local_part: str) -> Conversation | None:
    return case_store.conversation(local_part, app.settings.relay.domain)


def shape_limits(app: App) -> limits.Shape:
    configured = app.settings.limits
    return limits.Shape(configured.max_line_bytes, configured.max_header_count, configured.max_header_bytes)


def guarded(app: App, raw: bytes, case_id: int | None, work: Callable[[], Result],
            unreadable: Outcome) -> Result:
    """The frame every inbound message goes through: the shape limits first (cheap, before any
    parsing), then `work`; a message that cannot be read ends as `unreadable`, a database failure
    as a temporary failure (451: the sender's server keeps the message and retries)."""
    refused = limits.check_shape(raw, shape_limits(app))
    if refused is not None:
        return Result(refused, detail="message shape over the limits")
    del raw  # `work` holds the message as it needs it (intake.Incoming lets it go once parsed)
    try:
        return work()
    except sanitize.Unprocessable as exc:
        return Result(unreadable, detail=str(exc))
    except StorageError as exc:
        logs.event(Event.STORAGE_ERROR, f"database error while processing a message: {type(exc).__name__}",
                   level=logging.ERROR, case=case_id)
        return Result(Outcome.TEMPORARY_FAILURE, detail="database error")


def process(app: App, conversation: Conversation, envelope_from: str, raw: bytes | Incoming,
            authenticated: str | None = None) -> Result:
    """Decide about one message to a party's relay address and, if accepted, store its forward.
    `authenticated`: the sender authentication's verdict (domains only), stored with the case."""
    incoming = raw if isinstance(raw, Incoming) else Incoming(raw)
    del raw
    return guarded(app, incoming.raw, conversation.case_id,
                   lambda: _process(app, conversation, envelope_from, incoming, authenticated), Outcome.UNPROCESSABLE)


def _process(app: App, conversation: Conversation, envelope_from: str, incoming: Incoming,
             authenticated: str | None = None) -> Result:
    msg = sanitize.parse(incoming.raw)
    incoming.release()
    now = app.clock.now()
    kind, clue = classify.classify(msg, envelope_from, app.settings.relay.domain)
    if kind is classify.Kind.LOOP:
        return Result(Outcome.LOOP, detail=clue)
    if kind in (classify.Kind.AUTO_REPLY, classify.Kind.BOUNCE):
        outcome = Outcome.AUTO_REPLY_DROPPED if kind is classify.Kind.AUTO_REPLY else Outcome.BOUNCE_IGNORED
        events.record(conversation.case_id, outcomes.event(outcome), now,
                                f"from the {conversation.writer.value}: {clue}")
        return Result(outcome, detail=clue)
    said = headers.read(msg)
    outcome = policy.check_sender(conversation, envelope_from, said.addresses("From"),
                                  app.settings.cases.late_replies, now)
    if outcome is not Outcome.ACCEPTED:
        return Result(outcome, detail=f"sender not the {conversation.writer.value} of the case")
    per_hour = app.settings.limits.messages_per_case_per_hour
    if case_store.messages_since(conversation.case_id, now - timedelta(hours=1), per_hour) >= per_hour:
        return Result(Outcome.RATE_LIMITED, detail=f"more than {per_hour} messages in the last hour")
    known = case_store.thread_entries(list(dict.fromkeys(said.in_reply_to + said.references)))
    message_id = new_message_id(app.settings.relay.domain)
    route = sanitize.Route(
        hidden=_identities(conversation, envelope_from, said, app.settings.relay.domain),
        alias=conversation.reader_alias, sender_name=conversation.writer_name,
        platform_name=app.settings.relay.platform_name, recipient=conversation.reader_email,
        message_id=message_id, date=now,
        in_reply_to=policy.map_thread_ids(said.in_reply_to, conversation.writer, app.settings.relay.domain, known),
        references=policy.map_thread_ids(said.references, conversation.writer, app.settings.relay.domain, known),
        block_remote=conversation.writer is Party.BUSINESS,
        note=lambda removed: notices.removed_attachments(app.settings.relay.templates, conversation.locale, removed),
        extra_notes=_late_note(app, conversation, now))
    # the forward is handed over without a name here: _store seals it and lets the plain one go
    queue_id = _store(app, conversation, incoming.size, said.message_id, message_id,
                      sanitize.forward(msg, route, said), now, authenticated)
    if said.copies:  # never relayed, and the forward does not mention them
        logs.event(Event.FORWARD_COPIES_DROPPED, f"{said.copies} Cc/Bcc recipient(s) of the "
                   f"{conversation.writer.value} not relayed", case=conversation.case_id, qid=queue_id)
    return Result(Outcome.ACCEPTED, queue_id=queue_id)


def _late_note(app: App, conversation: Conversation, now: datetime) -> tuple[str, ...]:
    """Tell the business that the answer came after the reply window (in the case's language)."""
    if not conversation.late(now):
        return ()
    timezone = app.settings.relay.timezone
    deadline = notices.localized(conversation.deadline, conversation.locale, timezone)
    return (notices.line(app.settings.relay.templates, conversation.locale, "late_reply", {"deadline": deadline}),)


def _identities(conversation: Conversation, envelope_from: str, said: headers.Said,
                domain: str) -> tuple[str, ...]:
    """Every address that names the sender: the registered one, the envelope sender (a forwarding
    service's rewrite of it, say) and whatever the message's From, Sender and Reply-To say."""
    found = [conversation.writer_email or "", envelope_from.lower(), *said.sender_addresses()]
    return tuple(a for a in dict.fromkeys(found) if "@" in a and not a.endswith("@" + domain))


def _store(app: App, conversation: Conversation, size: int, original_id: str | None,
           message_id: str, body: bytes, now: datetime, authenticated: str | None = None) -> str:
    """Message, outbox entry and case transition in one transaction (durable before the 250).

    A reviewer's first answer within the window makes the case `replied` and queues the reply
    notice; an answer after the window expires the case first (with its expiry notice) and is
    marked late. The conditional updates decide a race with the expiry job: exactly one wins.
    """
    queue_id = outbox.new_queue_id()
    writer = conversation.writer
    late = conversation.late(now)
    with events.transaction():
        sealed = bodies.seal(message_id, body)
        del body  # its only reference: a large forward is in memory once, sealed, when its row is written
        stored = case_store.record_message(conversation.case_id, queue_id, writer, now, size, original_id, late)
        outbox.enqueue(case_id=conversation.case_id, source_id=stored, kind=Mail.FORWARD,
                       recipient_party=writer.other, recipient=conversation.reader_email,
                       message_id=message_id, queue_id=queue_id, body=sealed, now=now,
                       lifetime=app.settings.outbound.max_queue_lifetime)
        if writer is Party.REVIEWER and conversation.state in (State.AWAITING_REPLY, State.EXPIRED):
            _reviewer_answered(app, conversation.case_id, stored, late, now)
        if authenticated is not None:  # the verdict names domains only, never an address
            events.record(conversation.case_id, Event.MESSAGE_AUTHENTICATED, now,
                          f"{writer.value}: {authenticated}", message=f"{writer.value} message: {authenticated}")
        events.log(Event.FORWARD_QUEUED, f"forward {writer.value} -> {writer.other.value}"
                   + (" (late)" if late else ""), case=conversation.case_id, qid=queue_id)
    return queue_id


def _reviewer_answered(app: App, case_id: int, message_id: int, late: bool, now: datetime) -> None:
    """The case's first answer (or a late one): the transition the answer causes, if any."""
    if late:
        lifecycle.expire(app, case_id, now)
        return
    if lifecycle_store.mark_replied(case_id, now):
        # the reply notice follows once this forward is delivered (lifecycle.notify_replies)
        events.record(case_id, Event.CASE_REPLIED, now, message="the reviewer answered")
    elif lifecycle_store.current_state(case_id) is State.EXPIRED:
        # the expiry job won the race by moments: the answer counts as late
        case_store.mark_late(message_id)
