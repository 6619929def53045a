"""Mail to the relay's signed bounce addresses: delivery reports and automatic replies to what the
relay sent. A permanent failure marks the delivery failed with its status (a `delivery.failed`
event, and so the platform's webhook); when something sent to the reviewer bounced, the business
is told in the relay's own words (the bounce itself quotes the reviewer's address and is never
passed on).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from relay.app import App
from relay.core import bounces, classify, sanitize
from relay.core.outcomes import Outcome
from relay.core.vocabulary import DeliveryFacts, DeliveryState, Event, Mail, Party
from relay.core.webhooks import Facts, FailureReason
from relay.inbound.intake import Result, guarded
from relay.outbound import notice_queue
from relay.store import events, outbox


def valid_for(app: App) -> timedelta:
    """How long a bounce address keeps working after its delivery was queued."""
    lifetime: timedelta = app.settings.cases.conversation_lifetime
    return app.settings.outbound.max_queue_lifetime + lifetime


def lookup(app: App, delivery_id: int, now: datetime) -> DeliveryFacts | None:
    """The delivery a bounce address names, if it is recent enough to be answered."""
    facts = outbox.delivery_facts(delivery_id)
    if facts is None or facts.created_at < now - valid_for(app):
        return None
    return facts


def process(app: App, delivery: DeliveryFacts, envelope_from: str, raw: bytes) -> Result:
    """Read one message at a bounce address; an unreadable one is ignored (250), never forwarded."""
    return guarded(app, raw, delivery.case_id, lambda: _process(app, delivery, envelope_from, raw),
                   Outcome.BOUNCE_IGNORED)


def _process(app: App, delivery: DeliveryFacts, envelope_from: str, raw: bytes) -> Result:
    msg = sanitize.parse(raw)
    now = app.clock.now()
    case_id = delivery.case_id
    kind, clue = classify.classify(msg, envelope_from, app.settings.relay.domain)
    if kind is classify.Kind.AUTO_REPLY:
        events.record(case_id, Event.AUTOREPLY_DROPPED, now,
                      f"to the {delivery.kind} for the {delivery.recipient_party}: {clue}")
        return Result(Outcome.AUTO_REPLY_DROPPED, detail=clue)
    report = bounces.read(msg)
    if report.permanent is None:
        return Result(Outcome.BOUNCE_IGNORED, detail=report.detail)
    what = f"{delivery.kind} to the {delivery.recipient_party}: {report.detail}"
    with events.transaction():
        # stored, not logged here: the SMTP adapter writes the one log line of every outcome, with
        # the reply it gave (logging here as well wrote bounce.received twice for one report)
        events.record(case_id, Event.BOUNCE_RECEIVED, now, what)
        if report.permanent:
            outbox.mark_bounced(delivery.id, f"bounced: {report.status} {report.detail}")
            if delivery.state is not DeliveryState.FAILED:  # failed now, by this report
                events.record(case_id, Event.DELIVERY_FAILED, now, f"{delivery.kind} to the {delivery.recipient_party}",
                              facts=Facts(kind=delivery.kind, party=delivery.recipient_party, status=report.status,
                                          reason=FailureReason.BOUNCED))
            if delivery.recipient_party is Party.REVIEWER and case_id is not None:
                notice_queue.queue_notice(app, case_id, Mail.REVIEWER_UNREACHABLE, now)
    return Result(Outcome.BOUNCE_RECORDED, queue_id=delivery.queue_id, detail=what,
                  level=logging.WARNING if report.permanent else logging.INFO)
