"""What the store hands out: typed rows instead of dictionaries, so a misspelt column is a type
error, not a KeyError in front of an admin. `as_dict` gives the JSON the CLI prints (the same
names as the columns, so `--json` output stays what it was)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar


class Record:
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class CaseRow(Record):
    """A case as listings show it (no addresses)."""

    id: int
    state: str
    locale: str
    requests: str
    opened_at: datetime
    deadline: datetime
    replied_at: datetime | None
    expired_at: datetime | None
    declined_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    last_activity_at: datetime
    review: str
    origin: str
    business: str
    business_name: str


@dataclass(frozen=True)
class EventEntry(Record):
    name: str
    at: datetime
    detail: str
    id: int = 0


@dataclass(frozen=True)
class MessageEntry(Record):
    queue_id: str
    sender: str
    received_at: datetime
    size: int
    late: bool


@dataclass(frozen=True)
class DeliveryEntry(Record):
    """A delivery as the case timeline and the outbox listing show it."""

    id: int
    queue_id: str
    kind: str
    recipient_party: str
    state: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    case: int | None = None


@dataclass(frozen=True)
class WebhookEntry(Record):
    """A webhook as `relay webhooks` and `relay status` show it (never its body or the secret)."""

    id: int
    msg_id: str
    case: int | None
    type: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class CaseDetail(Record):
    """A case's timeline: the case, its events, messages and deliveries."""

    case: CaseRow
    events: list[EventEntry]
    messages: list[MessageEntry]
    deliveries: list[DeliveryEntry]

    def as_dict(self) -> dict[str, Any]:
        return {**self.case.as_dict(), "events": [e.as_dict() for e in self.events],
                "messages": [m.as_dict() for m in self.messages],
                "deliveries": [d.as_dict() for d in self.deliveries]}


@dataclass(frozen=True)
class NoticeFacts:
    """What notice templates may say about a case (names, dates, ids), and where notices go."""

    id: int
    locale: str
    opened_at: datetime
    deadline: datetime
    replied_at: datetime | None
    declined_at: datetime | None
    decline_value: str | None  # behind the reviewer's decline link; None only in a case not migrated yet
    message: str
    requests: str
    review_id: str
    reviewer_email: str | None
    reviewer_name: str
    business_name: str
    business_email: str
    tokens: dict[str, str]  # party -> its relay address's local part


T = TypeVar("T")


def build(kind: type[T], row: dict[str, Any]) -> T:
    """A record from a row, taking the columns the record has."""
    names = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{key: value for key, value in row.items() if key in names})
