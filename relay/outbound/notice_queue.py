"""Notices as deliveries: composed from the case's facts and its templates, then queued in the
outbox once per case and kind (the claims in relay.store.transitions). Used by the scheduled jobs
(reply and expiry notices, reminders), by the outbox worker (the business is told when the
reviewer cannot be reached), by the bounce intake and by a decline."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relay.app import App
from relay.core import decline_tokens, notices
from relay.core.compose import Addressing, new_message_id, relayed_name
from relay.core.vocabulary import Event, Mail, Party
from relay.store import events, outbox
from relay.store import transitions as store
from relay.store.records import NoticeFacts


@dataclass(frozen=True)
class NoticeKind:
    recipient: Party
    from_relay_address: bool  # True: from the reviewer's relay address, so replying reaches the business


KINDS = {
    Mail.REPLY_NOTICE: NoticeKind(Party.BUSINESS, from_relay_address=False),
    Mail.EXPIRY_NOTICE: NoticeKind(Party.BUSINESS, from_relay_address=False),
    Mail.REMINDER: NoticeKind(Party.REVIEWER, from_relay_address=True),
    Mail.REVIEWER_UNREACHABLE: NoticeKind(Party.BUSINESS, from_relay_address=False),
    Mail.DECLINED_NOTICE: NoticeKind(Party.BUSINESS, from_relay_address=False),
}


def notice_address(app: App) -> str:
    """The relay's own sender for notices that nobody is meant to answer."""
    return f"notices@{app.settings.relay.domain}"


def queue_notice(app: App, case_id: int, kind: Mail, now: datetime) -> bool:
    """Queue one notice of `kind` for the case unless it has one already (see queue_notices)."""
    return queue_notices(app, [case_id], kind, now) == 1


# notices composed before the write transaction, by case; None where the recipient is gone
Composed = dict[int, outbox.Outgoing | None]


def prepare_notices(app: App, case_ids: list[int], kind: Mail, now: datetime) -> Composed:
    """The notice of `kind` for each case, composed but not stored ({case id: delivery}; None where
    the recipient is gone). It only reads, so the jobs call it before their write transaction:
    rendering never holds the database's write lock that inbound mail is waiting for."""
    facts = store.notice_facts(sorted(case_ids))
    # the notices of one batch share many of their dates (`now`, days cases were opened on):
    # each distinct one is formatted once
    localized = functools.cache(notices.localized)
    return {case_id: compose_notice(app, kind, facts[case_id], now, localized) for case_id in sorted(facts)}


def store_notices(app: App, prepared: Composed, kind: Mail, now: datetime) -> int:
    """Queue the prepared notices of those cases that have none of `kind` yet; how many were
    queued. Call inside a transaction: claims, deliveries and events commit together or not at
    all. Claims, deliveries and events are prepared statements bound once per case, the delivery
    links one statement for the batch. A case whose recipient is gone is claimed all the same, so
    it is not picked again by every pass."""
    claimed = store.claim_notices(sorted(prepared), kind, now)
    composed = {case_id: c for case_id in sorted(claimed) if (c := prepared[case_id]) is not None}
    delivery_ids = outbox.enqueue_many(list(composed.values()), now, app.settings.outbound.max_queue_lifetime)
    store.attach_deliveries({claimed[case_id]: delivery_ids[c.message_id] for case_id, c in composed.items()})
    for case_id, c in composed.items():
        events.record(case_id, Event.NOTICE_QUEUED, now, kind,
                      message=f"{kind} queued to the {c.recipient_party.value}", qid=c.queue_id)
    return len(composed)


def queue_notices(app: App, case_ids: list[int], kind: Mail, now: datetime) -> int:
    """Compose and queue in one go, for callers already inside a transaction (see store_notices)."""
    return store_notices(app, prepare_notices(app, case_ids, kind, now), kind, now)


def compose_notice(app: App, kind: Mail, facts: NoticeFacts, now: datetime,
                   localized: Callable[..., str] = notices.localized) -> outbox.Outgoing | None:
    """The notice of `kind` for a case as a delivery, or None if its recipient is gone (a forgotten
    reviewer: nobody to tell). `localized`: how dates are formatted (notices.localized)."""
    spec = KINDS[kind]
    timezone = app.settings.relay.timezone
    locale = facts.locale
    context: dict[str, Any] = {
        "platform_name": app.settings.relay.platform_name, "business_name": facts.business_name,
        "reviewer_name": facts.reviewer_name, "review_id": facts.review_id, "message": facts.message,
        "opened_on": localized(facts.opened_at, locale, timezone, False),
        "deadline": localized(facts.deadline, locale, timezone),
        "replied_at": localized(facts.replied_at or now, locale, timezone),
        "declined_at": localized(facts.declined_at or now, locale, timezone),
        "decline_url": decline_tokens.link(app.settings.api.public_url, facts.decline_value, app.key)
        if facts.decline_value else None,
    }
    reviewer_alias = f"{facts.tokens.get(Party.REVIEWER.value, '')}@{app.settings.relay.domain}"
    if spec.recipient is Party.REVIEWER:
        to_address, to_name = facts.reviewer_email, facts.reviewer_name
    else:
        to_address, to_name = facts.business_email, facts.business_name
    if not to_address:
        return None
    rendered = notices.render(app.settings.relay.templates, kind, locale, context)
    if spec.from_relay_address:
        who = Addressing(from_name=relayed_name(facts.business_name, app.settings.relay.platform_name),
                         from_address=reviewer_alias, to_address=to_address, to_name=to_name,
                         reply_to=reviewer_alias)
    else:
        who = Addressing(from_name=app.settings.relay.platform_name, from_address=notice_address(app),
                         to_address=to_address, to_name=to_name)
    message_id = new_message_id(app.settings.relay.domain)
    return outbox.Outgoing(
        case_id=facts.id, source_id=None, kind=kind, recipient_party=spec.recipient, recipient=to_address,
        message_id=message_id, queue_id=outbox.new_queue_id(), body=notices.build(rendered, who, message_id, now))
