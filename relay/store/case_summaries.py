"""Cases as the platform's API shows them: state and times, counts of messages each way, the
notices sent, and what could not be delivered. No address, name or message content: the platform
learns what became of its request, never who the reviewer is. A page of cases costs a handful of
grouped queries, not a few per case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee as pw

from relay.core.vocabulary import DeliveryState, Mail
from relay.store import sealed_columns
from relay.store.models import Business, Case, Delivery, Message, Review, rows


@dataclass(frozen=True)
class DeliveryProblem:
    party: str
    kind: str
    status: str  # failed | retrying (no error text: a remote server's answer may quote the reviewer)


@dataclass(frozen=True)
class CaseSummary:
    id: int
    review_id: str
    business_id: str
    state: str
    opened_at: datetime
    deadline: datetime
    replied_at: datetime | None
    expired_at: datetime | None
    declined_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    late: bool = False
    messages: dict[str, int] = field(default_factory=dict)
    notices: dict[str, datetime] = field(default_factory=dict)
    delivery_problems: list[DeliveryProblem] = field(default_factory=list)


def _cases() -> Any:
    return (Case.select(Case.id, Review.external_id.alias("review_id"), Business.external_id.alias("business_id"),
                        Case.state, Case.opened_at, Case.deadline, Case.replied_at, Case.expired_at,
                        Case.declined_at, Case.closed_at, Case.close_reason)
            .join(Review).switch(Case).join(Business))


def summary(case_id: int) -> CaseSummary | None:
    found = page(after=None, limit=1, only=case_id)
    return found[0] if found else None


def page(after: int | None, limit: int, review_id: str | None = None, business_id: str | None = None,
         state: str | None = None, only: int | None = None) -> list[CaseSummary]:
    """Cases in id order after the id `after` (keyset pagination: stable while cases are added)."""
    query = _cases().order_by(Case.id).limit(limit)
    if only is not None:
        query = query.where(Case.id == only)
    if after is not None:
        query = query.where(Case.id > after)
    if review_id is not None:
        query = query.where(Review.external_id == review_id)
    if business_id is not None:
        query = query.where(Business.external_id == business_id)
    if state is not None:
        query = query.where(Case.state == state)
    found = rows(query)
    for row in found:
        sealed_columns.open_row(Case, row, row["id"])
    return _with_details(found)


def _with_details(found: Sequence[dict[str, Any]]) -> list[CaseSummary]:
    ids = [row["id"] for row in found]
    if not ids:
        return []
    messages: dict[int, dict[str, int]] = {i: {"from_reviewer": 0, "from_business": 0} for i in ids}
    late: set[int] = set()
    for row in rows(Message.select(Message.case, Message.sender, pw.fn.COUNT(Message.id).alias("n"),
                                   pw.fn.MAX(pw.Case(None, [(Message.late, 1)], 0)).alias("late"))
                    .where(Message.case.in_(ids)).group_by(Message.case, Message.sender)):
        messages[row["case"]][f"from_{row['sender']}"] = row["n"]
        if row["late"]:
            late.add(row["case"])
    notices: dict[int, dict[str, datetime]] = {i: {} for i in ids}
    problems: dict[int, list[DeliveryProblem]] = {i: [] for i in ids}
    for row in rows(Delivery.select(Delivery.case, Delivery.kind, Delivery.recipient_party, Delivery.state,
                                    Delivery.attempts, Delivery.sent_at, Delivery.last_error)
                    .where(Delivery.case.in_(ids)).order_by(Delivery.id)):
        if row["kind"] != Mail.FORWARD and row["state"] == DeliveryState.SENT and row["sent_at"] is not None:
            notices[row["case"]].setdefault(row["kind"], row["sent_at"])
        if row["state"] == DeliveryState.FAILED:
            problems[row["case"]].append(DeliveryProblem(row["recipient_party"], row["kind"], "failed"))
        elif row["state"] == DeliveryState.QUEUED and row["attempts"] and row["last_error"]:
            problems[row["case"]].append(DeliveryProblem(row["recipient_party"], row["kind"], "retrying"))
    return [CaseSummary(**row, late=row["id"] in late, messages=messages[row["id"]], notices=notices[row["id"]],
                        delivery_problems=problems[row["id"]]) for row in found]
