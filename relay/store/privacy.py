"""Forgetting a reviewer (the right to be forgotten): their address, their name and every stored
message body that belongs to them are erased; what remains are anonymised counts and case states."""

from __future__ import annotations

from datetime import datetime

from relay.core.vocabulary import DeliveryState, Event, Party
from relay.store import bodies, events, sealed_columns, transitions
from relay.store.models import Case, Delivery, DeliveryBody, Message, Review

FORGOTTEN = "(forgotten)"


def forget_reviewer(address: str, now: datetime) -> dict[str, int]:
    """Erase one reviewer; returns what was erased, as counts."""
    with events.transaction():
        # the blind index finds them (relay.core.sealing): both spellings of an internationalised
        # domain and any case, under the old or the new key while a rotation runs
        found = list(Review.select(Review.id, Review.external_id).where(
            Review.reviewer_digest.in_(sealed_columns.digests(address))))
        reviews = [r.id for r in found]
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
        theirs = DeliveryBody.delivery.in_(Delivery.select(Delivery.id).where(belongs))
        counts["message_bodies"] = DeliveryBody.delete().where(theirs).execute()
        for delivery in Delivery.select(Delivery.id, Delivery.message_id).where(
                Delivery.case.in_(cases) & (Delivery.recipient_party == Party.REVIEWER.value)):
            Delivery.update(recipient=sealed_columns.seal(Delivery, "recipient", delivery.message_id, FORGOTTEN)).where(
                Delivery.id == delivery.id).execute()
        for delivery in Delivery.select(Delivery.id, Delivery.message_id).where(
                Delivery.case.in_(cases) & Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING])
                & ~bodies.held()):
            error = sealed_columns.seal(Delivery, "last_error", delivery.message_id, "the reviewer was forgotten")
            Delivery.update(state=DeliveryState.FAILED, last_error=error).where(Delivery.id == delivery.id).execute()
        events.record_many(list(cases), Event.REVIEWER_FORGOTTEN, now)
        counts["cases_closed"] = len(transitions.close_cases(list(cases), now, transitions.FORGOTTEN_REASON))
        for review in found:
            Review.update(reviewer_email=None, reviewer_digest=None,
                          reviewer_name=sealed_columns.seal(Review, "reviewer_name", review.external_id, FORGOTTEN)
                          ).where(Review.id == review.id).execute()
    return counts
