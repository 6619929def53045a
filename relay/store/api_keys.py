"""API keys in the database: created, listed, revoked, found by digest (relay.core.credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee as pw

from relay.core.errors import Refused
from relay.store.models import ApiKey, rows
from relay.store.records import Record, build


class KeyExists(Refused):
    """A key with that name exists already (revoked or not: names are never reused)."""


@dataclass(frozen=True)
class ApiKeyEntry(Record):
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class ActiveKey:
    id: int
    name: str


def create(name: str, digest: str, now: datetime) -> None:
    try:
        with ApiKey._meta.database.atomic():
            ApiKey.insert(name=name, digest=digest, created_at=now).execute()
    except pw.IntegrityError:
        raise KeyExists(f"an API key named {name!r} exists already (names are not reused; pick another)") from None


def listing() -> list[ApiKeyEntry]:
    query = ApiKey.select(ApiKey.name, ApiKey.created_at, ApiKey.last_used_at, ApiKey.revoked_at).order_by(ApiKey.id)
    return [build(ApiKeyEntry, row) for row in rows(query)]


def revoke(name: str, now: datetime) -> bool:
    """True if a key was revoked now; False if it was revoked before. Raises NoSuchKey."""
    found = ApiKey.get_or_none(ApiKey.name == name)
    if found is None:
        raise NoSuchKey(f"no API key named {name!r} (relay api-key list shows them)")
    return bool(ApiKey.update(revoked_at=now).where((ApiKey.id == found.id) & ApiKey.revoked_at.is_null()).execute())


class NoSuchKey(Refused):
    """No key has that name."""


def find(digest: str) -> ActiveKey | None:
    """The key with this digest, unless it is revoked."""
    found = rows(ApiKey.select(ApiKey.id, ApiKey.name).where((ApiKey.digest == digest) & ApiKey.revoked_at.is_null()))
    return ActiveKey(found[0]["id"], found[0]["name"]) if found else None


def touch(key_id: int, now: datetime) -> None:
    ApiKey.update(last_used_at=now).where(ApiKey.id == key_id).execute()
