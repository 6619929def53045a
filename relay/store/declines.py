"""What a decline link leads to: the case behind a decline value, as its pages need it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw

from relay.core.vocabulary import Party, State
from relay.store.models import Business, Case, Message, rows
from relay.store.records import build


@dataclass(frozen=True)
class DeclineFacts:
    """The case as a decline page may speak of it: names the reviewer already knows from their
    mail, dates, the state. Nothing about the reviewer."""

    id: int
    state: State
    locale: str
    opened_at: datetime
    deadline: datetime
    declined_at: datetime | None
    business_name: str
    reviewer_answered: bool


def find(value: str) -> DeclineFacts | None:
    """The case whose decline value this is, or None (one query, by the value's unique index)."""
    return _one(Case.decline_value == value)


def find_by_id(case_id: int) -> DeclineFacts | None:
    return _one(Case.id == case_id)


def _one(where: Any) -> DeclineFacts | None:
    answered = Message.select(Message.id).where((Message.case == Case.id) & (Message.sender == Party.REVIEWER.value))
    found = rows(Case.select(Case.id, Case.state, Case.locale, Case.opened_at, Case.deadline, Case.declined_at,
                             Business.name.alias("business_name"), pw.fn.EXISTS(answered).alias("reviewer_answered"))
                 .join(Business).where(where))
    if not found:
        return None
    row = found[0]
    return build(DeclineFacts, {**row, "state": State(row["state"]),
                                "reviewer_answered": bool(row["reviewer_answered"])})
