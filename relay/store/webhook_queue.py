"""The webhook outbox: webhooks written with the case events they report, claimed with a lease, and
the result of each attempt (ADR 18).

`add` runs inside the transaction that records the events (relay.store.events calls it), so a
webhook exists exactly when its event was committed: a crash cannot lose one or invent one. Claims
work as the mail outbox's do (relay.store.outbox): `state='sending'`, a random token and a lease,
`FOR UPDATE SKIP LOCKED` on PostgreSQL; every change after a claim checks the token, so a worker
whose lease was taken over cannot overwrite the new owner's result.

Whether webhooks are written at all, and how long each is tried, is the process's setting
(`configure`, called when the relay opens its database): with `[webhooks] url` empty nothing is
written, so nothing piles up that would flood the platform once a URL is set.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from relay.core import webhooks as rules
from relay.core.vocabulary import WebhookState, WebhookType
from relay.store import leases
from relay.store.models import Business, Case, Review, Setting, Webhook, db, rows
from relay.store.prepared import insert_one
from relay.store.records import WebhookEntry, build

STOPPED_KEY = "webhooks_stopped"
PENDING = (WebhookState.PENDING.value, WebhookState.SENDING.value)


@dataclass(frozen=True)
class _Config:
    enabled: bool = False
    max_age: timedelta = timedelta(days=3)


_config = _Config()


def configure(enabled: bool, max_age: timedelta) -> None:
    """Write webhooks from now on (or not), each to be tried for `max_age`."""
    global _config  # noqa: PLW0603 (one setting per process, like the database binding itself)
    _config = _Config(enabled, max_age)


def enabled() -> bool:
    return _config.enabled


@dataclass(frozen=True)
class Recorded:
    """A case event just recorded, with what it adds to a webhook."""

    event_id: int
    case_id: int
    event: str
    at: datetime
    facts: rules.Facts = rules.NO_FACTS


_COLUMNS = ("msg_id", "event", "case", "type", "body", "state", "attempts", "created_at", "expires_at",
            "next_attempt_at")
_INSERT = insert_one(Webhook, _COLUMNS, Webhook.id)


def add(recorded: list[Recorded]) -> int:
    """The webhooks of events just recorded (those events that are webhooks); how many. Call in
    the events' transaction. The data is read now: the case's state after the change."""
    if not _config.enabled:
        return 0
    typed = [(r, kind) for r in recorded if (kind := rules.webhook_type(r.event, r.facts)) is not None]
    if not typed:
        return 0
    cases = _case_facts(sorted({r.case_id for r, _ in typed}))
    added = 0
    for item, kind in typed:
        case = cases.get(item.case_id)
        if case is None:
            continue
        text = rules.body(kind, item.at, rules.data(kind, case, item.facts))
        _INSERT.rows(rules.new_id(), item.event_id, item.case_id, kind.value, text, WebhookState.PENDING.value, 0,
                     item.at, item.at + _config.max_age, item.at)
        added += 1
    return added


def _case_facts(case_ids: list[int]) -> dict[int, rules.CaseFacts]:
    found = rows(Case.select(Case.id, Review.external_id.alias("review_id"),
                             Business.external_id.alias("business_id"), Case.state)
                 .join(Review).switch(Case).join(Business).where(Case.id.in_(case_ids)))
    return {r["id"]: rules.CaseFacts(r["id"], r["review_id"], r["business_id"], r["state"]) for r in found}


@dataclass(frozen=True)
class Claimed:
    id: int
    msg_id: str
    case_id: int | None
    type: WebhookType
    body: str
    attempts: int
    expires_at: datetime


def claim(now: datetime, lease: timedelta, limit: int, only: int | None = None) -> tuple[str, list[Claimed]]:
    """Claim up to `limit` due webhooks (or just webhook `only`): (claim token, rows)."""
    token = secrets.token_hex(8)
    queued = (Webhook.state == WebhookState.PENDING) & (Webhook.next_attempt_at <= now)
    stale = (Webhook.state == WebhookState.SENDING) & (Webhook.lease_until < now)
    with db.atomic():
        ids = leases.due_ids(Webhook, queued, stale, limit, only)
        if not ids:
            return token, []
        Webhook.update(state=WebhookState.SENDING, claim_token=token, lease_until=now + lease,
                       attempts=Webhook.attempts + 1).where(Webhook.id.in_(ids) & (queued | stale)).execute()
        found = rows(Webhook.select().where(Webhook.id.in_(ids) & (Webhook.claim_token == token))
                     .order_by(Webhook.id))
    return token, [Claimed(r["id"], r["msg_id"], r["case"], WebhookType(r["type"]), r["body"], r["attempts"],
                           r["expires_at"]) for r in found]


def renew(ids: list[int], token: str, until: datetime) -> None:
    if ids:
        Webhook.update(lease_until=until).where(Webhook.id.in_(ids) & (Webhook.claim_token == token)
                                                & (Webhook.state == WebhookState.SENDING)).execute()


def finish(webhook_id: int, token: str, step: rules.Step, now: datetime) -> bool:
    """Record where an attempt left a webhook; False if this claim no longer holds it."""
    values: dict[str, Any] = {"state": step.state.value, "claim_token": None, "lease_until": None}
    if step.state is WebhookState.SENT:
        values.update(sent_at=now, last_error=None)
    else:
        values["last_error"] = step.reason
        if step.next_attempt_at is not None:
            values["next_attempt_at"] = step.next_attempt_at
    return bool(Webhook.update(**values).where((Webhook.id == webhook_id) & (Webhook.claim_token == token)).execute())


# --- the endpoint's 410 stop -------------------------------------------------------------------------

def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class Stop:
    since: datetime
    detail: str


def stop(url: str, now: datetime, detail: str) -> None:
    """The endpoint at `url` answered 410 Gone: nothing more goes to it until `resume`."""
    value = f"{_digest(url)} {now.isoformat()} {detail}"
    Setting.insert(name=STOPPED_KEY, value=value).on_conflict(
        conflict_target=[Setting.name], update={Setting.value: value}).execute()


def stopped(url: str) -> Stop | None:
    """Whether the endpoint at `url` is stopped (a stop recorded for another URL does not hold: the
    platform gave the relay a new endpoint)."""
    row = Setting.get_or_none(Setting.name == STOPPED_KEY)
    if row is None:
        return None
    digest, since, detail = [*str(row.value).split(" ", 2), "", ""][:3]
    return Stop(datetime.fromisoformat(since), detail) if digest == _digest(url) else None


def resume(now: datetime) -> int:
    """Lift the stop; the pending webhooks are due now. How many are pending."""
    with db.atomic():
        Setting.delete().where(Setting.name == STOPPED_KEY).execute()
        Webhook.update(next_attempt_at=now).where((Webhook.state == WebhookState.PENDING)
                                                  & (Webhook.next_attempt_at > now)).execute()
        return int(Webhook.select().where(Webhook.state.in_(PENDING)).count())


# --- what admins, the API and /metrics read ----------------------------------------------------------

_LISTED = (Webhook.id, Webhook.msg_id, Webhook.case, Webhook.type, Webhook.state, Webhook.attempts,
           Webhook.created_at, Webhook.next_attempt_at, Webhook.last_error)


def listing(states: list[str], limit: int = 200) -> list[WebhookEntry]:
    return [build(WebhookEntry, r) for r in rows(Webhook.select(*_LISTED).where(Webhook.state.in_(states))
                                     .order_by(Webhook.created_at, Webhook.id).limit(limit))]


def oldest_pending() -> WebhookEntry | None:
    found = rows(Webhook.select(*_LISTED).where(Webhook.state.in_(PENDING))
                 .order_by(Webhook.created_at, Webhook.id).limit(1))
    return build(WebhookEntry, found[0]) if found else None


def find(reference: str) -> int | None:
    """A webhook's row id from its id or its `webhook-id` (`msg_...`, what the platform saw)."""
    condition = Webhook.msg_id == reference if reference.startswith("msg_") else \
        Webhook.id == int(reference) if reference.isdigit() else None
    if condition is None:
        return None
    row = Webhook.get_or_none(condition)
    return int(row.id) if row is not None else None


def retry_now(webhook_id: int, now: datetime) -> bool:
    """Make a pending or failed webhook due now, tried for a fresh `max_age`; False if unknown,
    sent, or being sent right now."""
    return bool(Webhook.update(state=WebhookState.PENDING, next_attempt_at=now, expires_at=now + _config.max_age)
                .where((Webhook.id == webhook_id) & Webhook.state.in_([WebhookState.PENDING, WebhookState.FAILED]))
                .execute())


def state_of(webhook_id: int) -> str | None:
    row = Webhook.get_or_none(Webhook.id == webhook_id)
    return str(row.state) if row is not None else None


def for_events(event_ids: list[int]) -> dict[int, tuple[str, str]]:
    """{event id: (webhook-id, state)} for those events that made a webhook."""
    if not event_ids:
        return {}
    return {r["event"]: (r["msg_id"], r["state"]) for r in rows(
        Webhook.select(Webhook.event, Webhook.msg_id, Webhook.state).where(Webhook.event.in_(event_ids)))}


def census() -> tuple[dict[str, int], datetime | None]:
    """Webhooks pending, sending and failed, and when the oldest pending one was created: one
    grouped query over the (state, next_attempt_at) index (sent ones are not read)."""
    found = rows(Webhook.select(Webhook.state, pw.fn.COUNT(Webhook.id).alias("n"),
                                pw.fn.MIN(Webhook.created_at).alias("oldest"))
                 .where(Webhook.state.in_([*PENDING, WebhookState.FAILED.value])).group_by(Webhook.state))
    oldest = [r["oldest"] for r in found if r["state"] in PENDING and r["oldest"] is not None]
    return {r["state"]: r["n"] for r in found}, min(oldest) if oldest else None
