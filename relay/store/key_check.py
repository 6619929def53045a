"""At start-up: the storage key from its source, checked against the database, before anything is
read or written. A missing key, a wrong one, or `off` on a sealed database stops the relay with
one line (exit 2): a relay that started anyway would fail on the first case, or seal new values
under a key the rest of the database is not under.

A database written in the clear (one from before schema version 8 is sealed by that migration,
one kept with `[storage] key = "off"` at the first start with a key) is sealed here, under the
migration lock, in one transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import peewee as pw

from relay import logs
from relay.core.sealing import Keyring, text_id
from relay.core.vocabulary import Event
from relay.store import key_files, resealing, sealed_columns, vault
from relay.store.key_files import KeySource
from relay.store.models import Review, Setting, db
from relay.store.vault import StorageKeyError


def _stored_check(database: pw.Database) -> str | None:
    if not database.table_exists(Setting._meta.table_name):
        return None
    return vault.stored_check()


def load(where: KeySource, database: pw.Database, create: bool) -> Keyring:
    """The keyring `where` gives, the default key file made when the database has none yet."""
    check = _stored_check(database)
    made = None
    if where.default and create and check is None and not key_files.exists(where):
        made = key_files.generate(Path(where.where), exist_ok=True)  # None: another relay starting made it
    if made is not None:
        logs.event(Event.STORAGE_KEY_CREATED, f"storage key {made} created in {where.where} (0600): keep a copy "
                   "apart from the database's backups, which it opens", level=logging.WARNING)
    key = key_files.read(where)
    return verified(Keyring(key), where, check)


def verified(ring: Keyring, where: KeySource, check: str | None) -> Keyring:
    """`ring` if it opens the database's key check (with a rotation's new key learnt)."""
    if check is None:
        return ring
    sealed_with = text_id(check)
    if not ring.on:
        raise StorageKeyError(f"the database is sealed (key {sealed_with}); [storage] key = \"off\" cannot "
                              "read it: point [storage] key at its key")
    if vault.opens_check(ring, check):
        return vault.learn(ring)
    under_way = vault.rotation()
    if under_way is not None and vault.opens_check(ring, under_way.check):
        raise StorageKeyError(f"a rotation to this key ({ring.current_id}) is under way: start the relay with "
                              f"the old key (key {sealed_with}) until `relay storage-key rotate` completes")
    raise StorageKeyError(f"{where} holds key {ring.current_id}, but the database is sealed with key "
                          f"{sealed_with}: point [storage] key at that key")


# set in the transaction that seals a database in place, removed once its files are rewritten: the
# clear text the sealing replaced is in free pages (SQLite) or dead row versions (PostgreSQL) until
# then, and a crash in between leaves the next start to do it
SCRUB_PENDING = "storage_scrub_pending"


def settle(database: pw.Database) -> None:
    """Run under the migration lock: a database in the clear is sealed under the keyring's key, or
    (encryption off) its reviewers are indexed."""
    ring = vault.ring()
    if _stored_check(database) is not None:
        return
    with db.atomic():
        if ring.on:
            sealed = resealing.seal_all(ring)
            write_check(ring)
            if sealed:
                Setting.insert(name=SCRUB_PENDING, value="1").on_conflict_ignore().execute()
            if sealed:
                logs.event(Event.STORAGE_SEALED, f"database sealed under storage key {ring.current_id} "
                           f"({sealed} row(s) were in the clear)")
        else:
            for review in Review.select(Review.id, Review.reviewer_email).where(
                    Review.reviewer_digest.is_null() & Review.reviewer_email.is_null(False)):
                Review.update(reviewer_digest=ring.digest(str(review.reviewer_email))).where(
                    Review.id == review.id).execute()


def scrub(database: Any) -> None:
    """After sealing in place: rewrite the tables so that no page keeps the clear text (SQLite's
    VACUUM and a truncating checkpoint of its WAL; PostgreSQL's VACUUM FULL of the sealed tables,
    which also drops their dead row versions). Outside any transaction, once, at start-up."""
    if Setting.get_or_none(Setting.name == SCRUB_PENDING) is None:
        return
    try:
        _rewrite(database)
    except pw.DatabaseError as exc:  # another process holds the database: the next start tries again
        logs.event(Event.STORAGE_ERROR, "the clear text the sealing replaced is still in the database's free "
                   f"pages ({' '.join(str(exc).split())}); the next start scrubs it", level=logging.WARNING)


def _rewrite(database: Any) -> None:
    if database_is_postgres(database):
        connection = database.connection()
        connection.autocommit = True  # VACUUM runs outside a transaction block
        try:
            for table in sealed_columns.TABLES:
                database.execute_sql(f'VACUUM FULL "{table.stored_in}"')
        finally:
            connection.autocommit = False
    else:
        database.execute_sql("VACUUM")
        busy = database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:  # another connection reads: the next start tries again
            return
    Setting.delete().where(Setting.name == SCRUB_PENDING).execute()
    logs.event(Event.STORAGE_SEALED, "the clear text the sealing replaced was scrubbed from the database's files")


def database_is_postgres(database: Any) -> bool:
    return isinstance(database, pw.PostgresqlDatabase)


def write_check(ring: Keyring) -> None:
    value = vault.check_value(ring)
    Setting.insert(name=vault.CHECK, value=value).on_conflict(
        conflict_target=[Setting.name], update={Setting.value: value}).execute()


def describe(ring: Keyring) -> str:
    """The start-up line's words for the key in use."""
    if not ring.on:
        return "storage encryption OFF ([storage] key = \"off\"): the database holds addresses in the clear"
    return f"storage sealed under key {ring.current_id}"


def complete_rotation(new: Keyring, database: Any) -> None:
    """The database is under `new` alone: the key check moves to it, and the new key's wrapped
    copy goes, from the row and from the files (SQLite deletes securely and its WAL is truncated;
    PostgreSQL rewrites the small `setting` table), so the old key and a later copy of the database
    do not give the new key away."""
    with db.atomic():
        write_check(new)
        Setting.delete().where(Setting.name.in_([vault.ROTATION, vault.ROTATION_KEY])).execute()
    if database_is_postgres(database):
        connection = database.connection()
        connection.autocommit = True
        try:
            database.execute_sql("VACUUM FULL setting")
        finally:
            connection.autocommit = False
    else:
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
