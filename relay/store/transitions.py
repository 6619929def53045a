"""Case state transitions and notice claims in the database.

Every transition is a conditional UPDATE whose row count decides who made it, and every notice is
claimed by inserting a row under a unique (case, kind) index. Both hold across processes and across
SQLite (IMMEDIATE transactions) and PostgreSQL (row locks re-check the WHERE clause), so a reply
racing the deadline ends in exactly one of `replied` or `expired`, and no notice goes out twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from relay.core.vocabulary import DeliveryState, Event, Mail, State
from relay.store import events, sealed_columns
from relay.store.models import Business, Case, Delivery, DeliveryBody, Notice, RelayAddress, Review, rows
from relay.store.prepared import Prepared
from relay.store.records import NoticeFacts, build


def mark_replied(case_id: int, now: datetime) -> bool:
    """awaiting_reply -> replied, only while the reply window is open."""
    return bool(Case.update(state=State.REPLIED.value, replied_at=now).where(
        (Case.id == case_id) & (Case.state == State.AWAITING_REPLY.value) & (Case.deadline > now)).execute())


def mark_declined(case_id: int, now: datetime) -> bool:
    """awaiting_reply -> declined, only while the reply window is open: the same condition under
    which an answer makes the case `replied`, so a decline racing the answer or the expiry job ends
    in exactly one of them. Declining is activity: the conversation's lifetime counts from it."""
    return bool(Case.update(state=State.DECLINED.value, declined_at=now, last_activity_at=now).where(
        (Case.id == case_id) & (Case.state == State.AWAITING_REPLY.value) & (Case.deadline > now)).execute())


def expire_due_cases(case_ids: list[int], now: datetime) -> list[int]:
    """awaiting_reply -> expired for those of `case_ids` whose reply window is over; the ids this
    call moved (one statement for the batch; the WHERE clause decides each case)."""
    if not case_ids:
        return []
    return _returned_ids(Case.update(state=State.EXPIRED.value, expired_at=now).where(
        Case.id.in_(case_ids) & (Case.state == State.AWAITING_REPLY.value) & (Case.deadline <= now)))


FORGOTTEN_REASON, LIFETIME_REASON = "reviewer forgotten", "conversation lifetime over"
OWN_REASONS = frozenset({FORGOTTEN_REASON, LIFETIME_REASON})


def close_cases(case_ids: list[int], now: datetime, reason: str | None, only_if: Any = True) -> list[int]:
    """Close those of `case_ids` that are not closed yet (and meet `only_if`): the one way a case is
    closed. Its relay addresses refuse mail from then on, its review may get a new case, and the
    event is recorded (and logged after the commit). The ids this call closed."""
    if not case_ids:
        return []
    closed = _returned_ids(Case.update(state=State.CLOSED.value, closed_at=now, open_review_key=None,
                                       close_reason=None).where(
        Case.id.in_(case_ids) & (Case.state != State.CLOSED.value) & only_if))
    if reason:  # sealed, bound to each case: an admin's or the platform's words may name anyone
        for case_id in closed:
            Case.update(close_reason=sealed_columns.seal(Case, "close_reason", case_id, reason)).where(
                Case.id == case_id).execute()
    # the event and the log say the relay's own reasons; another is kept (sealed) with the case only
    said = reason if reason in OWN_REASONS else ("a reason given with the request" if reason else "")
    events.record_many(closed, Event.CASE_CLOSED, now, said, message="case closed" + (f": {said}" if said else ""))
    return closed


def close_stale_cases(case_ids: list[int], now: datetime, lifetime: timedelta) -> list[int]:
    """Close those of `case_ids` that are still quiet; the ids this call closed."""
    return close_cases(case_ids, now, LIFETIME_REASON, Case.last_activity_at < now - lifetime)


def _returned_ids(update: Any) -> list[int]:
    return sorted(int(row[0]) for row in update.returning(Case.id).tuples().execute())


def current_state(case_id: int) -> State:
    return State(Case.get_by_id(case_id).state)


_CLAIM = Prepared(lambda case_id, kind, now: Notice.insert({"case": case_id, "kind": kind, "created_at": now})
                  .on_conflict_ignore().returning(Notice.id))


def claim_notices(case_ids: list[int], kind: Mail, now: datetime) -> dict[int, int]:
    """Claim a notice of `kind` for each case that has none yet: {case id: new notice id}.

    INSERT ... ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite) against the unique (case, kind)
    index, prepared once (relay.store.prepared); a row returned is a claim this call won."""
    claimed = {}
    for case_id in case_ids:
        for row in _CLAIM.rows(case_id, kind, now):
            claimed[case_id] = int(row["id"])
    return claimed


def attach_deliveries(notice_deliveries: dict[int, int]) -> None:
    """Record which delivery carries each notice ({notice id: delivery id}), in one statement."""
    if notice_deliveries:
        Notice.update(delivery=pw.Case(Notice.id, list(notice_deliveries.items()))).where(
            Notice.id.in_(list(notice_deliveries))).execute()


def notice_facts(case_ids: list[int]) -> dict[int, NoticeFacts]:
    """What notice templates may say about each case (names, dates, ids) and where notices go (the
    business's notices to the address its case was opened with)."""
    if not case_ids:
        return {}
    found = {r["id"]: {**r, "tokens": {}} for r in rows(
        Case.select(Case.id, Case.locale, Case.opened_at, Case.deadline, Case.replied_at,
                    Case.declined_at, Case.decline_value, Case.message, Case.requests,
                    Review.external_id.alias("review_id"),
                    Review.reviewer_email, Review.reviewer_name,
                    Business.name.alias("business_name"), Case.business_email)
        .join(Review).switch(Case).join(Business).where(Case.id.in_(case_ids)))}
    for r in rows(RelayAddress.select(RelayAddress.case, RelayAddress.party, RelayAddress.local_part)
                  .where(RelayAddress.case.in_(case_ids))):
        found[r["case"]]["tokens"][r["party"]] = r["local_part"]
    for facts in found.values():
        sealed_columns.open_row(Review, facts, facts["review_id"])
        sealed_columns.open_row(Case, facts, facts["id"])
    return {case_id: build(NoticeFacts, facts) for case_id, facts in found.items()}


def due_expiries(now: datetime, limit: int) -> list[int]:
    due = (Case.state == State.AWAITING_REPLY.value) & (Case.deadline <= now)
    return [r["id"] for r in rows(Case.select(Case.id).where(due).order_by(Case.deadline).limit(limit))]


def due_reply_notices(replied_before: datetime, limit: int) -> list[int]:
    """Cases replied by then, without a reply notice, whose forward to the business was delivered."""
    # correlated EXISTS from the few replied cases, so the cost does not grow with the outbox
    notified = Notice.select(Notice.id).where((Notice.case == Case.id) & (Notice.kind == Mail.REPLY_NOTICE))
    delivered = Delivery.select(Delivery.id).where(
        (Delivery.case == Case.id) & (Delivery.kind == Mail.FORWARD) & (Delivery.recipient_party == "business")
        & (Delivery.state == DeliveryState.SENT))
    return [r["id"] for r in rows(Case.select(Case.id).where(
        (Case.state == State.REPLIED.value) & (Case.replied_at <= replied_before)
        & pw.fn.EXISTS(delivered) & ~pw.fn.EXISTS(notified))
        .order_by(Case.replied_at).limit(limit))]


def due_reminders(now: datetime, before: timedelta, limit: int) -> list[int]:
    """Open cases whose deadline is within `before` and that had no reminder yet."""
    reminded = Notice.select(Notice.id).where((Notice.case == Case.id) & (Notice.kind == Mail.REMINDER))
    return [r["id"] for r in rows(Case.select(Case.id).where(
        (Case.state == State.AWAITING_REPLY.value) & (Case.deadline > now) & (Case.deadline <= now + before)
        & ~pw.fn.EXISTS(reminded)).order_by(Case.deadline).limit(limit))]


# a declined case is closed after the lifetime too: that frees its review for a new case
OPEN_STATES = [State.AWAITING_REPLY.value, State.REPLIED.value, State.EXPIRED.value, State.DECLINED.value]


def stale_conversations(now: datetime, lifetime: timedelta, limit: int) -> list[int]:
    # "state IN (open states)" rather than "state != closed": the (state, last_activity_at) index
    # then finds the few quiet cases without reading every closed one
    return [r["id"] for r in rows(Case.select(Case.id).where(
        Case.state.in_(OPEN_STATES) & (Case.last_activity_at < now - lifetime))
        .order_by(Case.last_activity_at).limit(limit))]


def purge_bodies(cutoff: datetime, limit: int) -> int:
    """Drop the bodies of finished deliveries older than `cutoff`; their metadata stays. The look-up
    walks the bodies' own age index and finds each one's delivery by id (a CROSS JOIN: SQLite then
    keeps that order, instead of walking every finished delivery ever sent through the state
    index), so its cost follows the old bodies still kept, not the size of the outbox."""
    finished = Delivery.state.in_([DeliveryState.SENT, DeliveryState.FAILED])
    ids = DeliveryBody.select(DeliveryBody.delivery).join(Delivery, pw.JOIN.CROSS).where(
        (DeliveryBody.delivery == Delivery.id) & (DeliveryBody.created_at < cutoff) & finished
    ).order_by(DeliveryBody.created_at).limit(limit)
    return int(DeliveryBody.delete().where(DeliveryBody.delivery.in_(ids)).execute())
