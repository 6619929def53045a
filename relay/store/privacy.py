"""Forgetting a reviewer (the right to be forgotten): their address, their name and every stored
message body that belongs to them are erased; what remains are anonymised counts and case states."""

from __future__ import annotations

from datetime import datetime

import peewee as pw

from relay.core.vocabulary import DeliveryState, Event, Party
from relay.store import events, transitions
from relay.store.models import Case, Delivery, Message, Review

FORGOTTEN = "(forgotten)"


def forget_reviewer(address: str, now: datetime) -> dict[str, int]:
    """Erase one reviewer; returns what was erased, as counts."""
    address = address.strip().lower()
    with events.transaction():
        reviews = [r.id for r in Review.select(Review.id).where(pw.fn.LOWER(Review.reviewer_email) == address)]
        cases = [c.id for c in Case.select(Case.id).where(Case.review.in_(reviews))] if reviews else []
        counts = {"reviews": len(reviews), "cases": len(cases), "message_bodies": 0, "cases_closed": 0,
                  "messages_kept_as_counts": 0}
        if not reviews:
            return counts
        own = Message.select(Message.id).where(Message.case.in_(cases) & (Message.sender == Party.REVIEWER.value))
        counts["messages_kept_as_counts"] = Message.update(original_message_id=None).where(
            Message.id.in_(own)).execute()
        belongs = Delivery.case.in_(cases) & (
            (Delivery.recipient_party == Party.REVIEWER.value) | Delivery.source.in_(own))
        counts["message_bodies"] = Delivery.select().where(belongs & Delivery.body.is_null(False)).count()
        Delivery.update(body=None).where(belongs).execute()
        Delivery.update(recipient=FORGOTTEN).where(
            Delivery.case.in_(cases) & (Delivery.recipient_party == Party.REVIEWER.value)).execute()
        Delivery.update(state=DeliveryState.FAILED, last_error="the reviewer was forgotten").where(
            Delivery.case.in_(cases) & Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING])
            & Delivery.body.is_null(True)).execute()
        events.record_many(list(cases), Event.REVIEWER_FORGOTTEN, now)
        counts["cases_closed"] = len(transitions.close_cases(list(cases), now, "reviewer forgotten"))
        Review.update(reviewer_email=None, reviewer_name=FORGOTTEN).where(Review.id.in_(reviews)).execute()
    return counts
