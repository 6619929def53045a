"""Opening the database named by `[storage] database` and creating the schema on first start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

import peewee as pw

from relay.core.errors import Unavailable
from relay.store import key_check, migrations, sealed_columns, vault
from relay.store.key_files import KeySource
from relay.store.models import Setting, db

# what a failed statement raises, whatever the database: the shells catch it without knowing peewee
StorageError = pw.DatabaseError


class StorageUnavailable(Unavailable):
    """The database cannot be reached or used right now (callers answer 451 / exit non-zero)."""


class NotMigrated(Unavailable):
    """A command that only reads found a database without the relay's tables, or an older schema."""


PRIVATE = 0o600  # the database holds reviewers' addresses and the instance's signing key


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL; None for any other database."""
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _private_file(path: Path, create: bool) -> None:
    """Create the database file 0600 before SQLite does (SQLite gives its WAL and shared-memory
    files the database file's mode), and take group and world access from an existing one."""
    if create and not path.exists():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = existing.stat()
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                existing.chmod(PRIVATE)
        except FileNotFoundError:
            continue


def make_database(url: str, create: bool = True) -> pw.Database:
    """sqlite:///PATH (absolute after config resolution) or postgresql://user:pw@host:port/name.
    With `create=False` a missing SQLite file stays missing (SQLite would create it)."""
    path = sqlite_path(url)
    if path is not None:
        _private_file(path, create)
        # WAL lets readers work while the one writer commits; synchronous=FULL makes each commit
        # durable before we answer 250. IMMEDIATE transactions take the write lock up front, so
        # two processes never both read-then-write the same row.
        # (a database that is only read keeps the journal mode it has: setting it would write)
        pragmas = {"journal_mode": "wal"} if create else {}
        return pw.SqliteDatabase(
            str(path),
            lock_type="IMMEDIATE",
            # secure_delete: what a row held is overwritten when it is deleted or rewritten, so a
            # value replaced by its sealed form, or under an old key, is not left in the page
            pragmas={**pragmas, "synchronous": 2, "busy_timeout": 30000, "foreign_keys": 1, "secure_delete": "fast"},
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


def migrate(url: str, key: KeySource) -> list[int]:
    """Open the database at `url` and migrate it; the versions migrated to."""
    return open_database(url, key)[1]


def open_database(url: str, key: KeySource, create: bool = True) -> tuple[pw.Database, list[int]]:
    """Bind the models to the database, check the storage key against it (relay.store.key_check)
    and bring its schema to this code's version: create it, or run the migrations it lacks
    (relay.store.migrations; safe when instances start at once). Returns the database and the
    versions migrated to.

    With `create=False` (the commands that only read) nothing is created or migrated: a database
    without the relay's tables, or with an older schema, is refused with a sentence saying what to run.
    """
    database = make_database(url, create)
    db.initialize(database)
    try:
        database.connect(reuse_if_open=True)
        if not create:
            _check_schema(database, url)
        vault.install(key_check.load(key, database, create))
        migrated = migrations.migrate(database) if create else []
        if create:
            key_check.scrub(database)
        return database, migrated
    except pw.OperationalError as exc:
        raise StorageUnavailable(f"cannot open database {describe(url)}: " + " ".join(str(exc).split())) from exc


def _check_schema(database: pw.Database, url: str) -> None:
    found = migrations.version(database)
    if found is None:
        raise NotMigrated(f"database {describe(url)} has no relay tables (check [storage] database; "
                          "`relay serve` or `relay migrate` creates them)")
    if found < migrations.CURRENT:
        raise NotMigrated(f"database {describe(url)} has schema version {found}, this relay needs "
                          f"{migrations.CURRENT}: run `relay migrate`")
    if found > migrations.CURRENT:
        raise migrations.SchemaTooNew(f"the database has schema version {found}, this relay knows up to "
                                      f"{migrations.CURRENT}: run the newer relay")


def describe(url: str) -> str:
    """The database as an admin recognises it, without a password: its file, or user@host:port/name."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    parts = urlsplit(url)
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{user}{parts.hostname or ''}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


def ping() -> None:
    """One round trip to the database (for /readyz); raises what the database raises."""
    revive()
    db.obj.execute_sql("SELECT 1")


def revive() -> None:
    """Drop this thread's PostgreSQL connection if the server has ended it (a restart, a failover,
    an admin's pg_terminate_backend): psycopg2 marks it closed after the failure that found out,
    and peewee would go on handing it out. The next statement then connects anew."""
    obj = db.obj
    if (isinstance(obj, pw.PostgresqlDatabase) and not obj.is_closed() and obj.transaction_depth() == 0
            and getattr(obj.connection(), "closed", 0)):  # type: ignore[no-untyped-call, arg-type]
        obj.close()


def is_postgres() -> bool:
    return isinstance(db.obj, pw.PostgresqlDatabase)


def instance_key() -> bytes:
    """The shared signing key (VERP, log pseudonyms), created once per database (sealed: with it,
    a log's pseudonyms could be matched against guessed addresses)."""
    name = sealed_columns.SECRET_ROW
    existing = Setting.get_or_none(Setting.name == name)
    if existing is None:
        value = sealed_columns.seal(Setting, "value", name, secrets.token_hex(32))
        Setting.insert(name=name, value=value).on_conflict_ignore().execute()
        existing = Setting.get(Setting.name == name)
    return bytes.fromhex(sealed_columns.open_text(Setting, "value", name, str(existing.value)) or "")


def close() -> None:
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()
