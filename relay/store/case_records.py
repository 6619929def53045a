"""Cases, their relay addresses and events in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw

from relay.core.cases import OpenCaseRequest
from relay.core.errors import Refused
from relay.core.vocabulary import Conversation, Party, State
from relay.store import events, outbox, sealed_columns, transitions
from relay.store.models import Business, Case, Delivery, Event, Message, RelayAddress, Review, db, rows
from relay.store.prepared import Prepared, insert_one
from relay.store.records import CaseDetail, CaseRow, DeliveryEntry, EventEntry, MessageEntry, build


class CaseAlreadyOpen(Refused):
    """The review already has a case that is not closed (`case_id`)."""

    def __init__(self, message: str, case_id: int | None = None) -> None:
        super().__init__(message)
        self.case_id = case_id


class NoSuchCase(Refused):
    pass


@dataclass(frozen=True)
class NewCase:
    case_id: int
    reviewer_token: str
    business_token: str


def create_case(req: OpenCaseRequest, reviewer_token: str, business_token: str,
                opened_at: datetime, deadline: datetime, decline_value: str) -> NewCase:
    """Insert business, review, case and both addresses. Call inside a transaction.
    `decline_value`: the random value behind the case's decline link (relay.core.decline_tokens).

    The case keeps the business address it was opened with: colleagues of one business may open
    cases from addresses of their own, and each case's answers and notices go to, and its business
    side is checked against, the address that asked."""
    email = sealed_columns.seal(Business, "email", req.business_id, req.business_email)
    business = Business.get_or_none(Business.external_id == req.business_id)
    if business is None:
        business = Business.create(external_id=req.business_id, name=req.business_name, email=email)
    else:
        Business.update(name=req.business_name, email=email).where(Business.id == business.id).execute()
    reviewer = {"reviewer_email": sealed_columns.seal(Review, "reviewer_email", req.review_id, req.reviewer_email),
                "reviewer_name": sealed_columns.seal(Review, "reviewer_name", req.review_id, req.reviewer_name),
                "reviewer_digest": sealed_columns.digest(req.reviewer_email)}
    review = Review.get_or_none(Review.external_id == req.review_id)
    if review is None:
        review = Review.create(external_id=req.review_id, business=business, origin=req.origin.value, **reviewer)
    else:
        Review.update(business=business, origin=req.origin.value, **reviewer).where(Review.id == review.id).execute()
    try:
        with db.atomic():
            # written, then sealed: the values are bound to the case's id, which the insert gives
            case = Case.create(review=review, business=business, business_email="",
                               state=State.AWAITING_REPLY.value, open_review_key=req.review_id, locale=req.locale,
                               requests=",".join(req.requests), message="",
                               opened_at=opened_at, deadline=deadline, last_activity_at=opened_at,
                               decline_value=decline_value)
            Case.update(business_email=sealed_columns.seal(Case, "business_email", case.id, req.business_email),
                        message=sealed_columns.seal(Case, "message", case.id, req.message)).where(
                Case.id == case.id).execute()
    except pw.IntegrityError:
        existing = Case.get_or_none(Case.open_review_key == req.review_id)
        case_id = existing.id if existing is not None else None
        raise CaseAlreadyOpen(f"review {req.review_id} already has an open case"
                              + (f" (case {case_id})" if case_id else ""), case_id) from None
    RelayAddress.create(local_part=reviewer_token, case=case, party=Party.REVIEWER.value)
    RelayAddress.create(local_part=business_token, case=case, party=Party.BUSINESS.value)
    return NewCase(case_id=case.id, reviewer_token=reviewer_token, business_token=business_token)


def _conversation_query(local_part: Any) -> Any:
    other = RelayAddress.alias("other")
    # any message of the reviewer's, in time or late (a late one sets no replied_at): the (case,
    # received_at) index finds the first one
    answered = Message.select(Message.id).where((Message.case == Case.id) & (Message.sender == Party.REVIEWER.value))
    return (RelayAddress.select(RelayAddress.local_part, RelayAddress.party, Case.id.alias("case_id"), Case.state,
                                Case.last_activity_at, Case.locale, Case.deadline,
                                Review.external_id.alias("review_id"), Review.reviewer_email,
                                Review.reviewer_name, Case.business_email,
                                Business.name.alias("business_name"), other.local_part.alias("other"),
                                pw.fn.EXISTS(answered).alias("reviewer_answered"))
            .join(Case).join(Review).switch(Case).join(Business).switch(Case)
            .join(other, pw.JOIN.LEFT_OUTER, on=(other.case == Case.id) & (other.party != RelayAddress.party))
            .where(RelayAddress.local_part == local_part))


# runs for every RCPT TO (see relay.store.prepared)
_CONVERSATION = Prepared(_conversation_query, convert={"last_activity_at": Case.last_activity_at,
                                                       "deadline": Case.deadline})


def conversation(local_part: str, domain: str) -> Conversation | None:
    """What the relay address `local_part@domain` stands for, or None if it is unknown (one query,
    the other party's address and whether the reviewer has written included)."""
    row = _CONVERSATION.first(local_part.lower())
    if row is None:
        return None
    sealed_columns.open_row(Review, row, row["review_id"])
    sealed_columns.open_row(Case, row, row["case_id"])
    writer = Party(row["party"])
    if writer is Party.REVIEWER:
        writer_email, writer_name, reader_email = row["reviewer_email"], row["reviewer_name"], row["business_email"]
    else:
        writer_email, writer_name, reader_email = row["business_email"], row["business_name"], row["reviewer_email"]
    return Conversation(
        case_id=row["case_id"], local_part=row["local_part"], state=State(row["state"]),
        last_activity_at=row["last_activity_at"], writer=writer, writer_email=writer_email,
        writer_name=writer_name, reader_email=reader_email or "",
        reader_alias=f"{row['other']}@{domain}" if row["other"] else "", locale=row["locale"],
        deadline=row["deadline"], reviewer_answered=bool(row["reviewer_answered"]))


def thread_entries(message_ids: list[str]) -> dict[str, tuple[Party, Party | None, str | None]]:
    """For relay Message-IDs: (recipient party, sender party of the forwarded message, its original id)."""
    if not message_ids:
        return {}
    found = rows(Delivery.select(Delivery.message_id, Delivery.recipient_party, Message.sender,
                                 Message.queue_id, Message.original_message_id)
                 .join(Message, pw.JOIN.LEFT_OUTER, on=(Delivery.source == Message.id))
                 .where(Delivery.message_id.in_(message_ids)))
    return {r["message_id"]: (Party(r["recipient_party"]), Party(r["sender"]) if r["sender"] else None,
                              sealed_columns.open_text(Message, "original_message_id", r["queue_id"],
                                                       r["original_message_id"])) for r in found}


_MESSAGE_COLUMNS = ("case", "queue_id", "sender", "received_at", "size", "original_message_id", "late")
_INSERT_MESSAGE = insert_one(Message, _MESSAGE_COLUMNS, Message.id)
_TOUCH = Prepared(lambda now, case_id: Case.update(last_activity_at=now).where(Case.id == case_id))


def record_message(case_id: int, queue_id: str, sender: Party, received_at: datetime, size: int,
                   original_message_id: str | None, late: bool) -> int:
    """A message a party sent (metadata only), and the case's last activity; its id. Call inside
    the transaction that queues its forward."""
    original = sealed_columns.seal(Message, "original_message_id", queue_id, original_message_id)
    message_id = int(_INSERT_MESSAGE.rows(case_id, queue_id, sender.value, received_at, size, original, late)[0]["id"])
    _TOUCH.rows(received_at, case_id)
    return message_id


def _recent(case_id: Any, since: Any, enough: Any) -> pw.Select:
    recent = Message.select(Message.id).where((Message.case == case_id) & (Message.received_at >= since))
    return Message.select(pw.fn.COUNT(pw.SQL("*")).alias("n")).from_(recent.limit(enough).alias("recent"))


_MESSAGES_SINCE = Prepared(_recent)


def messages_since(case_id: int, since: datetime, enough: int) -> int:
    """How many messages the case had since then, counted up to `enough` (the per-case rate limit
    runs for every message: a conversation flooded with messages costs no more to count than one
    at its limit)."""
    row = _MESSAGES_SINCE.first(case_id, since, enough)
    return int(row["n"]) if row else 0


def close_case(case_id: int, reason: str | None, now: datetime) -> bool:
    """Close a case (an admin, the platform); False if it was closed already. Raises NoSuchCase."""
    if Case.get_or_none(Case.id == case_id) is None:
        raise NoSuchCase(f"no case {case_id}")
    with events.transaction():
        return bool(transitions.close_cases([case_id], now, reason))


def mark_late(message_id: int) -> None:
    """An answer that lost the race with the expiry job by moments counts as late."""
    Message.update(late=True).where(Message.id == message_id).execute()


def _case_query() -> Any:
    return (Case.select(Case.id, Case.state, Case.locale, Case.requests, Case.opened_at, Case.deadline,
                        Case.replied_at, Case.expired_at, Case.declined_at, Case.closed_at, Case.close_reason,
                        Case.last_activity_at, Review.external_id.alias("review"), Review.origin,
                        Business.external_id.alias("business"), Business.name.alias("business_name"))
            .join(Review).switch(Case).join(Business))


def case_rows(status: str | None = None, business: str | None = None, review: str | None = None,
              limit: int = 1000) -> list[CaseRow]:
    query = _case_query().order_by(Case.id.desc()).limit(limit)
    if status:
        query = query.where(Case.state == status)
    if business:
        query = query.where(Business.external_id == business)
    if review:
        query = query.where(Review.external_id == review)
    return [build(CaseRow, _opened(row)) for row in rows(query)]


def _opened(row: dict[str, Any]) -> dict[str, Any]:
    sealed_columns.open_row(Case, row, row["id"])
    return row


def event_counts(names: list[str], since: datetime) -> dict[str, int]:
    found = rows(Event.select(Event.name, pw.fn.COUNT(Event.id).alias("n"))
                 .where(Event.name.in_(names) & (Event.at >= since)).group_by(Event.name))
    return {name: next((r["n"] for r in found if r["name"] == name), 0) for name in names}


def case_detail(case_id: int) -> CaseDetail:
    found = rows(_case_query().where(Case.id == case_id))
    if not found:
        raise NoSuchCase(f"no case {case_id}")
    events = rows(Event.select(Event.id, Event.name, Event.at, Event.detail)
                  .where(Event.case == case_id).order_by(Event.at, Event.id))
    messages = rows(Message.select(Message.queue_id, Message.sender, Message.received_at, Message.size, Message.late)
                    .where(Message.case == case_id).order_by(Message.id))
    deliveries = outbox.opened_errors(rows(
        Delivery.select(Delivery.id, Delivery.queue_id, Delivery.kind, Delivery.recipient_party, Delivery.state,
                        Delivery.attempts, Delivery.created_at, Delivery.sent_at, Delivery.message_id,
                        Delivery.last_error)
        .where(Delivery.case == case_id).order_by(Delivery.id)))
    return CaseDetail(build(CaseRow, _opened(found[0])), [build(EventEntry, e) for e in events],
                      [build(MessageEntry, m) for m in messages], [build(DeliveryEntry, d) for d in deliveries])


def state_counts() -> dict[str, int]:
    return {r["state"]: r["n"] for r in
            rows(Case.select(Case.state, pw.fn.COUNT(Case.id).alias("n")).group_by(Case.state))}
