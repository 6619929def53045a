"""The case lifecycle: expiry, reminders, reply and expiry notices, closing quiet conversations and
purging old bodies. Each job is idempotent and safe in several processes at once; the database
claims in relay.store.lifecycle decide who does a piece of work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from relay import logs
from relay.app import App
from relay.core.redact import describe
from relay.core.vocabulary import Event, Mail
from relay.outbound.notice_queue import Composed, prepare_notices, store_notices
from relay.store import events, refusal_counts
from relay.store import transitions as store

BATCH = 200


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
