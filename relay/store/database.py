"""Opening the database named by `[storage] database` and creating the schema on first start."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

import peewee as pw

from relay.core.errors import Unavailable
from relay.store import migrations
from relay.store.models import Setting, db

# what a failed statement raises, whatever the database: the shells catch it without knowing peewee
StorageError = pw.DatabaseError


class StorageUnavailable(Unavailable):
    """The database cannot be reached or used right now (callers answer 451 / exit non-zero)."""


def make_database(url: str) -> pw.Database:
    """sqlite:///PATH (absolute after config resolution) or postgresql://user:pw@host:port/name."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers work while the one writer commits; synchronous=FULL makes each commit
        # durable before we answer 250. IMMEDIATE transactions take the write lock up front, so
        # two processes never both read-then-write the same row.
        return pw.SqliteDatabase(
            str(path),
            lock_type="IMMEDIATE",
            pragmas={"journal_mode": "wal", "synchronous": 2, "busy_timeout": 30000,
                     "foreign_keys": 1},
        )
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        return pw.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname or None,
            port=parts.port or 5432,
        )
    raise ValueError(f"unknown database URL scheme in {url!r}")


def migrate(url: str) -> list[int]:
    """Open the database at `url` and migrate it; the versions migrated to."""
    database = make_database(url)
    db.initialize(database)
    try:
        database.connect(reuse_if_open=True)
        return migrations.migrate(database)
    except pw.OperationalError as exc:
        raise StorageUnavailable("cannot open database: " + " ".join(str(exc).split())) from exc


def open_database(url: str) -> pw.Database:
    """Bind the models to the database and bring its schema to this code's version: create it,
    or run the migrations it lacks (relay.store.migrations; safe when instances start at once)."""
    database = make_database(url)
    db.initialize(database)
    try:
        database.connect(reuse_if_open=True)
        migrations.migrate(database)
    except pw.OperationalError as exc:
        raise StorageUnavailable("cannot open database: " + " ".join(str(exc).split())) from exc
    return database


def is_postgres() -> bool:
    return isinstance(db.obj, pw.PostgresqlDatabase)


def instance_key() -> bytes:
    """The shared signing key (VERP, log pseudonyms), created once per database."""
    existing = Setting.get_or_none(Setting.name == "secret")
    if existing is None:
        Setting.insert(name="secret", value=secrets.token_hex(32)).on_conflict_ignore().execute()
        existing = Setting.get(Setting.name == "secret")
    return bytes.fromhex(str(existing.value))


def close() -> None:
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()
