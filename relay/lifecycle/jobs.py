"""The case lifecycle: expiry, reminders, reply and expiry notices, closing quiet conversations and
purging old bodies. Each job is idempotent and safe in several processes at once; the database
claims in relay.store.lifecycle decide who does a piece of work.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from relay import logs
from relay.app import App
from relay.core import decline_tokens, notices
from relay.core.compose import Addressing, new_message_id, relayed_name
from relay.core.redact import describe
from relay.core.vocabulary import Event, Mail, Party
from relay.store import events, outbox, refusal_counts
from relay.store import transitions as store
from relay.store.records import NoticeFacts

BATCH = 200


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


def expire(app: App, case_id: int, now: datetime) -> bool:
    """Expire one case if its window is over, with its expiry notice. Call inside a transaction."""
    return expire_cases(app, [case_id], now) == 1


def expire_cases(app: App, case_ids: list[int], now: datetime, prepared: Composed | None = None) -> int:
    """Expire those cases whose window is over, each with its expiry notice; how many. Call inside
    a transaction; `prepared`: their expiry notices composed beforehand (prepare_notices)."""
    expired = store.expire_due_cases(case_ids, now)
    events.record_many(expired, Event.CASE_EXPIRED, now, message="reply window over without an answer")
    ready = dict(prepared or {})
    missing = [case_id for case_id in expired if case_id not in ready]
    ready.update(prepare_notices(app, missing, Mail.EXPIRY_NOTICE, now))
    store_notices(app, {case_id: ready[case_id] for case_id in expired if case_id in ready}, Mail.EXPIRY_NOTICE, now)
    return len(expired)


def _each(ids: Callable[[], list[int]], act: Callable[[list[int], Any], int],
          prepare: Callable[[list[int]], Any] = lambda batch: None, rounds: int = 10_000) -> int:
    """Run `act` on batches of ids until none is left; one transaction (one durable commit) per
    batch. `prepare` reads and composes what the batch needs before the transaction begins. The
    conditions inside `act` still decide each case on its own, so a batch that fails is simply
    done again by the next pass."""
    done = 0
    seen: set[int] = set()
    for _ in range(rounds):
        batch = [i for i in ids() if i not in seen]
        if not batch:
            break
        seen.update(batch)
        ready = prepare(batch)
        with events.transaction():
            done += act(batch, ready)
    return done


def _notices(app: App, kind: Mail, now: datetime) -> tuple[Callable[[list[int]], Composed],
                                                           Callable[[list[int], Composed], int]]:
    """The prepare and act steps of a job that only queues notices of `kind`."""
    return (lambda batch: prepare_notices(app, batch, kind, now),
            lambda batch, prepared: store_notices(app, prepared, kind, now))


def expire_due(app: App) -> int:
    now = app.clock.now()
    return _each(lambda: store.due_expiries(now, BATCH),
                 lambda batch, prepared: expire_cases(app, batch, now, prepared),
                 lambda batch: prepare_notices(app, batch, Mail.EXPIRY_NOTICE, now))


def notify_replies(app: App) -> int:
    """Tell the business that the reviewer answered, once the answer has reached it.

    The notice says the answer was forwarded, so it waits until the forward is delivered (a forward
    that fails is reported instead), and `[cases] reply_notice_after` since the answer, so it comes
    as one status message after the forward and the reviewer's quick follow-ups, not between them.
    """
    now = app.clock.now()
    settled = now - app.settings.cases.reply_notice_after
    prepare, act = _notices(app, Mail.REPLY_NOTICE, now)
    return _each(lambda: store.due_reply_notices(settled, BATCH), act, prepare)


def remind_due(app: App) -> int:
    before = app.settings.cases.reminder_before
    if not before:
        return 0
    now = app.clock.now()
    prepare, act = _notices(app, Mail.REMINDER, now)
    return _each(lambda: store.due_reminders(now, before, BATCH), act, prepare)


def close_stale(app: App) -> int:
    now = app.clock.now()
    lifetime = app.settings.cases.conversation_lifetime

    def close(batch: list[int], _: Any) -> int:
        return len(store.close_stale_cases(batch, now, lifetime))

    return _each(lambda: store.stale_conversations(now, lifetime, BATCH), close)


REFUSAL_HISTORY = timedelta(days=30)  # refusal counts are for monitoring: a month is plenty


def purge(app: App) -> int:
    """Message bodies past the retention (counted), and refusal counts past a month."""
    refusal_counts.purge(app.clock.now() - REFUSAL_HISTORY)
    cutoff = app.clock.now() - app.settings.storage.retention
    total = 0
    while (purged := store.purge_bodies(cutoff, 1000)) > 0:
        total += purged
    if total:
        logs.event(Event.STORAGE_PURGED, f"{total} message bodies older than the retention removed")
    return total


def run_all(app: App) -> dict[str, int]:
    """One pass of the lifecycle jobs (blocking; callers in asyncio run it in a thread)."""
    counts = {}
    for name, job in (("expired", expire_due), ("reply_notices", notify_replies), ("reminded", remind_due),
                      ("closed", close_stale), ("purged", purge)):
        try:
            counts[name] = job(app)
        except Exception as exc:  # one failing job must not stop the others; the next pass retries
            logs.event(Event.JOBS_ERROR, f"{name} job failed: {describe(exc)}", level=logging.ERROR)
            counts[name] = 0
    return counts
