"""Stored first responses for requests with an `Idempotency-Key` (see IdempotentResponse).

`claim` runs first in the transaction that does the work: it inserts the key's row, so a second
request with the same key waits on the unique index until the first commits, then fails to insert
and, tried again, finds the stored response. A key older than KEEP is free again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee as pw

from relay.store.models import IdempotentResponse

KEEP = timedelta(hours=24)

# what a failed claim raises: the caller tries once more, and then finds the stored response
Conflict = pw.IntegrityError


@dataclass(frozen=True)
class Stored:
    request_digest: str
    status: int
    body: str


def find(api_key_id: int, key: str, now: datetime) -> Stored | None:
    row = IdempotentResponse.get_or_none((IdempotentResponse.api_key == api_key_id)
                                         & (IdempotentResponse.key == key)
                                         & (IdempotentResponse.created_at > now - KEEP))
    return Stored(row.request_digest, row.status, row.body) if row is not None and row.status else None


def claim(api_key_id: int, key: str, request_digest: str, now: datetime) -> int:
    """Take the key for this request (raises Conflict while another request holds it)."""
    IdempotentResponse.delete().where((IdempotentResponse.api_key == api_key_id) & (IdempotentResponse.key == key)
                                      & (IdempotentResponse.created_at <= now - KEEP)).execute()
    return int(IdempotentResponse.insert(api_key=api_key_id, key=key, request_digest=request_digest, status=0,
                                         body="", created_at=now).execute())


def answer(row_id: int, status: int, body: str) -> None:
    IdempotentResponse.update(status=status, body=body).where(IdempotentResponse.id == row_id).execute()


def purge(now: datetime) -> int:
    return int(IdempotentResponse.delete().where(IdempotentResponse.created_at <= now - KEEP).execute())
