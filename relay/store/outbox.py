"""The outbox table: enqueue, claim with a lease, and record the result of each delivery attempt.

A claim sets `state='sending'`, a random claim token and a lease. The worker renews the lease while
it sends; a process that dies mid-send stops renewing, the lease runs out and another pass (in any
instance) claims the delivery again. Every state change after a claim checks the claim token, so a
worker whose lease was taken over cannot overwrite the new owner's result.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from relay.core.vocabulary import DeliveryFacts, DeliveryState, Event, Mail, Party
from relay.store import bodies, events, leases, sealed_columns
from relay.store.bodies import Sealed
from relay.store.models import Delivery, Message, db, rows
from relay.store.prepared import insert_one
from relay.store.records import DeliveryEntry, build


@dataclass(frozen=True)
class Claimed:
    id: int
    case_id: int | None
    queue_id: str
    kind: Mail
    recipient: str
    recipient_party: Party
    message_id: str
    body: bytes | bytearray  # opened into a buffer of its own (relay.core.sealing)
    attempts: int
    expires_at: datetime


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


@dataclass(frozen=True)
class Outgoing:
    """One delivery to add to the outbox."""

    case_id: int | None
    source_id: int | None
    kind: Mail
    recipient_party: Party
    recipient: str
    message_id: str
    queue_id: str
    body: bytes | Sealed


def _row(item: Outgoing, now: datetime, lifetime: timedelta, seal: bool = True) -> dict[str, Any]:
    """A new delivery's columns: queued, due now, given up after `lifetime`; the recipient sealed,
    bound to the delivery's Message-ID (unique, and known before the row is written)."""
    recipient = sealed_columns.seal(Delivery, "recipient", item.message_id, item.recipient) if seal else item.recipient
    size = item.body.size if isinstance(item.body, Sealed) else len(item.body)
    return {"case": item.case_id, "source": item.source_id, "kind": item.kind.value,
            "recipient_party": item.recipient_party.value, "recipient": recipient,
            "message_id": item.message_id, "queue_id": item.queue_id, "size": size,
            "state": DeliveryState.QUEUED.value, "created_at": now, "expires_at": now + lifetime,
            "next_attempt_at": now}


# the column names in _row's order, read off a row of placeholders
_COLUMNS = tuple(_row(Outgoing(None, None, Mail.FORWARD, Party.REVIEWER, "", "", "", b""), datetime.min, timedelta(),
                      seal=False))
_INSERT_ONE = insert_one(Delivery, _COLUMNS, Delivery.id)  # every forward and notice


def enqueue(*, case_id: int | None, source_id: int | None, kind: Mail, recipient_party: Party,
            recipient: str, message_id: str, queue_id: str, body: bytes | Sealed, now: datetime,
            lifetime: timedelta) -> int:
    """Add one delivery; call inside the transaction that records what caused it."""
    item = Outgoing(case_id, source_id, kind, recipient_party, recipient, message_id, queue_id, body)
    return enqueue_many([item], now, lifetime)[message_id]


def enqueue_many(items: list[Outgoing], now: datetime, lifetime: timedelta) -> dict[str, int]:
    """Add deliveries with their bodies; {message id: delivery id} (the Message-ID is unique). Call
    inside the transaction that records what caused them. One prepared insert per row: binding a
    row is cheaper than peewee generating the SQL of one statement with all the rows."""
    added = {}
    for item in items:
        delivery_id = int(_INSERT_ONE.rows(*_row(item, now, lifetime).values())[0]["id"])
        sealed = item.body if isinstance(item.body, Sealed) else bodies.seal(item.message_id, item.body)
        bodies.store(delivery_id, item.message_id, now, sealed)
        added[item.message_id] = delivery_id
    return added


def claim(now: datetime, lease: timedelta, limit: int, only: int | None = None) -> tuple[str, list[Claimed]]:
    """Claim up to `limit` due deliveries (or just delivery `only`); returns (claim token, rows)."""
    token = secrets.token_hex(8)
    due = ((Delivery.state == DeliveryState.QUEUED) & (Delivery.next_attempt_at <= now)) | (
        (Delivery.state == DeliveryState.SENDING) & (Delivery.lease_until < now))
    if only is not None:
        due = due & (Delivery.id == only)
    with db.atomic():
        queued = (Delivery.state == DeliveryState.QUEUED) & (Delivery.next_attempt_at <= now)
        stale = (Delivery.state == DeliveryState.SENDING) & (Delivery.lease_until < now)
        ids = leases.due_ids(Delivery, queued, stale, limit, only)
        if not ids:
            return token, []
        Delivery.update(state=DeliveryState.SENDING, claim_token=token, lease_until=now + lease,
                        attempts=Delivery.attempts + 1).where(Delivery.id.in_(ids) & due).execute()
        found = _opened(rows(Delivery.select().where(Delivery.id.in_(ids) & (Delivery.claim_token == token))))
    return token, [Claimed(id=r["id"], case_id=r["case"], queue_id=r["queue_id"], kind=Mail(r["kind"]),
                           recipient=r["recipient"], recipient_party=Party(r["recipient_party"]),
                           message_id=r["message_id"], body=r["body"] or b"",
                           attempts=r["attempts"], expires_at=r["expires_at"]) for r in found]


def _opened(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claimed rows with recipient and body opened. A row whose sealed values do not open where
    they are (changed, or moved from another delivery) is failed on the spot and logged, never sent
    and never in the way of the others."""
    usable = []
    sealed = bodies.read({row["id"]: row["message_id"] for row in found})
    for row in found:
        try:
            sealed_columns.open_row(Delivery, row, row["message_id"])
            held = sealed.pop(row["id"], None)
            row["body"] = bodies.opened(row["message_id"], held) if held is not None else None
            del held
        except sealed_columns.SealedValueRefused as exc:
            Delivery.update(state=DeliveryState.FAILED, claim_token=None, lease_until=None,
                            last_error=_sealed_error(row["id"], f"not sent: {exc}")).where(
                Delivery.id == row["id"]).execute()
            events.log(Event.DELIVERY_FAILED, f"delivery {row['id']} not sent: {exc}", level=logging.ERROR,
                       case=row["case"], qid=row["queue_id"])
            continue
        usable.append(row)
    return usable


def renew(ids: list[int], token: str, until: datetime) -> None:
    if ids:
        Delivery.update(lease_until=until).where(Delivery.id.in_(ids) & (Delivery.claim_token == token)
                                                 & (Delivery.state == DeliveryState.SENDING)).execute()


def _finish(delivery_id: int, token: str, **values: Any) -> bool:
    return bool(Delivery.update(claim_token=None, lease_until=None, **values).where(
        (Delivery.id == delivery_id) & (Delivery.claim_token == token)).execute())


def _sealed_error(delivery_id: int, error: str) -> str | None:
    """`error` sealed for the delivery's row (a refusal may quote the recipient's address)."""
    row = Delivery.select(Delivery.message_id).where(Delivery.id == delivery_id).first()
    return sealed_columns.seal(Delivery, "last_error", row.message_id, error) if row is not None else None


def opened_errors(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with `message_id` and `last_error`, the error opened (for listings and timelines)."""
    for row in found:
        row["last_error"] = sealed_columns.open_text(Delivery, "last_error", row["message_id"], row["last_error"])
    return found


def mark_sent(delivery_ids: list[int], token: str, now: datetime) -> set[int]:
    """Mark a batch sent in one statement; the ids still held under `token` (those it marked)."""
    if not delivery_ids:
        return set()
    query = Delivery.update(claim_token=None, lease_until=None, state=DeliveryState.SENT, sent_at=now,
                            last_error=None).where(Delivery.id.in_(delivery_ids) & (Delivery.claim_token == token))
    return {int(row[0]) for row in query.returning(Delivery.id).tuples().execute()}


def mark_retry(delivery_id: int, token: str, next_at: datetime, error: str) -> bool:
    return _finish(delivery_id, token, state=DeliveryState.QUEUED, next_attempt_at=next_at,
                   last_error=_sealed_error(delivery_id, error))


def mark_failed(delivery_id: int, token: str, error: str) -> bool:
    return _finish(delivery_id, token, state=DeliveryState.FAILED, last_error=_sealed_error(delivery_id, error))


def late_sources(delivery_ids: list[int]) -> set[int]:
    """Those of the deliveries that forward a message which came after the reply window."""
    return {r["id"] for r in rows(Delivery.select(Delivery.id).join(Message, on=(Delivery.source == Message.id))
                                  .where(Delivery.id.in_(delivery_ids) & (Message.late == True)))}  # noqa: E712


def delivery_facts(delivery_id: int) -> DeliveryFacts | None:
    """What a bounce address stands for: the delivery's case, kind, recipient party and age."""
    found = rows(Delivery.select(Delivery.id, Delivery.case, Delivery.kind, Delivery.recipient_party,
                                 Delivery.queue_id, Delivery.created_at, Delivery.state)
                 .where(Delivery.id == delivery_id))
    if not found:
        return None
    row = found[0]
    return DeliveryFacts(id=row["id"], case_id=row["case"], kind=Mail(row["kind"]),
                         recipient_party=Party(row["recipient_party"]), queue_id=row["queue_id"],
                         created_at=row["created_at"], state=DeliveryState(row["state"]))


def mark_bounced(delivery_id: int, error: str) -> None:
    """A delivery the smarthost took but the recipient's side gave back for good."""
    Delivery.update(state=DeliveryState.FAILED, last_error=_sealed_error(delivery_id, error), claim_token=None,
                    lease_until=None).where(
        Delivery.id == delivery_id).execute()


def listing(states: list[DeliveryState], limit: int = 200) -> list[DeliveryEntry]:
    return [build(DeliveryEntry, row) for row in opened_errors(rows(
        Delivery.select(Delivery.id, Delivery.case, Delivery.queue_id, Delivery.kind, Delivery.recipient_party,
                        Delivery.state, Delivery.attempts, Delivery.created_at, Delivery.next_attempt_at,
                        Delivery.message_id, Delivery.last_error)
        .where(Delivery.state.in_(states)).order_by(Delivery.created_at).limit(limit)))]


def retry_now(delivery_id: int, now: datetime, lifetime: timedelta) -> bool:
    """Make a pending or failed delivery due now, with a fresh queue lifetime; False if unknown,
    already sent, or being sent right now."""
    return bool(Delivery.update(state=DeliveryState.QUEUED, next_attempt_at=now, last_error=None,
                                expires_at=now + lifetime).where(
        (Delivery.id == delivery_id) & Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.FAILED])
        & bodies.held()).execute())


def state_counts() -> dict[str, int]:
    return {r["state"]: r["n"] for r in rows(Delivery.select(
        Delivery.state, pw.fn.COUNT(Delivery.id).alias("n")).group_by(Delivery.state))}


def oldest_pending() -> DeliveryEntry | None:
    found = opened_errors(rows(Delivery.select(Delivery.id, Delivery.queue_id, Delivery.kind, Delivery.recipient_party,
                                 Delivery.state, Delivery.created_at, Delivery.attempts, Delivery.last_error,
                                 Delivery.message_id, Delivery.next_attempt_at)
                 .where(Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]))
                 .order_by(Delivery.created_at).limit(1)))
    return build(DeliveryEntry, found[0]) if found else None


def census() -> tuple[dict[str, int], datetime | None]:
    """For /metrics: deliveries queued, sending and failed by state, and when the oldest queued or
    sending one was created. One grouped query over the (state, next_attempt_at) index; sent
    deliveries, the bulk of the table, are not read."""
    pending = (DeliveryState.QUEUED.value, DeliveryState.SENDING.value)
    found = rows(Delivery.select(Delivery.state, pw.fn.COUNT(Delivery.id).alias("n"),
                                 pw.fn.MIN(Delivery.created_at).alias("oldest"))
                 .where(Delivery.state.in_([*pending, DeliveryState.FAILED.value])).group_by(Delivery.state))
    oldest = [r["oldest"] for r in found if r["state"] in pending and r["oldest"] is not None]
    return {r["state"]: r["n"] for r in found}, min(oldest) if oldest else None
