"""Schema versions and the forward migrations between them.

The schema's version is kept in the database (`setting` `schema_version`; a database without it is
version 1, the schema before migrations existed). `migrate` brings a database to the version of
this code: a new database gets the tables as the models describe them; an older one runs the
migrations it has not run, each in its own transaction (peewee's `playhouse.migrate`). Several
instances starting at once on PostgreSQL take turns: one migrates under an advisory lock, the
others wait for it and then find nothing left to do. On SQLite one transaction around all the
steps holds the write lock from the version check to the last step (each step's transaction is a
savepoint in it) and does the same. A database newer than the code is refused: old code must not
write into a schema it does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee as pw
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run

from relay import logs
from relay.core import decline_tokens
from relay.core.errors import Unavailable
from relay.core.vocabulary import Event
from relay.store import key_check
from relay.store.models import MODELS, ApiKey, DeliveryBody, IdempotentResponse, RefusalCount, Setting, Webhook

VERSION_KEY = "schema_version"
_LOCK = 7_210_413_277  # PostgreSQL advisory lock id: any constant the relay alone uses


class SchemaTooNew(Unavailable):
    """The database was migrated by a newer relay than this one."""


@dataclass(frozen=True)
class Migration:
    version: int        # the version the database has after it
    description: str
    apply: Callable[[pw.Database, SchemaMigrator], None]


def _event_timeline_index(database: pw.Database, migrator: SchemaMigrator) -> None:
    """A case's timeline reads its events in time order: one index for both (the models declare
    it, so a new database has it from the start)."""
    if "event_case_id_at" not in {index.name for index in database.get_indexes("event")}:
        run(migrator.add_index("event", ("case_id", "at"), False))


def _refusal_counts(database: pw.Database, migrator: SchemaMigrator) -> None:
    """Refusals were only in the log file; counted in the database, `relay status` sees them when
    the log goes to stdout or journald."""
    database.create_tables([RefusalCount], safe=True)


def _business_email_per_case(database: pw.Database, migrator: SchemaMigrator) -> None:
    """Each case keeps the business address it was opened with: the business's one address, which
    every new case overwrote, sent the answers of a colleague's earlier cases to whoever asked last.
    Existing cases get the address they are answered at today, their business's.

    The column is added NOT NULL with a default of '' (both databases allow that on a table with
    rows; without a default neither does), filled in the same transaction, and on PostgreSQL the
    default is dropped again, so the schema is the one a new database gets from the models. SQLite
    keeps the default: dropping it means rebuilding the table, which inside a transaction with
    foreign keys on would delete every row that refers to a case. The relay always writes the
    column, so the default is never used."""
    if "business_email" not in {column.name for column in database.get_columns("case")}:
        column = pw.CharField(max_length=320, constraints=[pw.SQL("DEFAULT ''")])
        run(migrator.add_column("case", "business_email", column, allow_not_null=True))
    case, business = pw.Table("case"), pw.Table("business")  # the tables as they are, not the models
    filled = business.select(business.c.email).where(business.c.id == case.c.business_id)
    (case.update({case.c.business_email: filled}).where(case.c.business_email == "")
     .execute(database))  # only rows not filled yet: run twice, it fills once
    if isinstance(database, pw.PostgresqlDatabase):
        run(migrator.drop_column_default("case", "business_email"))


def _api_tables(database: pw.Database, migrator: SchemaMigrator) -> None:
    """The HTTP API's keys (as digests) and its stored responses for idempotent retries."""
    database.create_tables([ApiKey, IdempotentResponse], safe=True)


def _webhooks(database: pw.Database, migrator: SchemaMigrator) -> None:
    """The webhook outbox: signed webhooks to the platform, written with the events they report."""
    database.create_tables([Webhook], safe=True)


def _decline_links(database: pw.Database, migrator: SchemaMigrator) -> None:
    """The reviewer can decline: each case gets the random value behind its decline link and the
    time it was declined. The value is unique (a link finds one case) and made here, in Python,
    from `secrets` for every case that has none, so the reminders of cases opened before this
    version carry a working link too; neither database has a random source of that quality in
    plain SQL on every version the relay runs on. Nullable, as the model has it: a new case always
    gets one, and the step run again fills only what is empty."""
    columns = {column.name for column in database.get_columns("case")}
    steps = []
    if "decline_value" not in columns:
        steps.append(migrator.add_column("case", "decline_value", pw.CharField(max_length=64, null=True)))
    if "declined_at" not in columns:
        steps.append(migrator.add_column("case", "declined_at", pw.DateTimeField(null=True)))
    if steps:
        run(*steps)
    if "case_decline_value" not in {index.name for index in database.get_indexes("case")}:
        run(migrator.add_index("case", ("decline_value",), True))
    case = pw.Table("case")  # the table as it is, not the model
    empty = [row[0] for row in case.select(case.c.id).where(case.c.decline_value.is_null())
             .tuples().execute(database)]
    for case_id in empty:
        case.update({case.c.decline_value: decline_tokens.new_value()}).where(case.c.id == case_id).execute(database)


# the columns a sealed value no longer fits (PostgreSQL enforces a varchar's length; SQLite does not)
_WIDENED = (("business", "email"), ("review", "reviewer_email"), ("review", "reviewer_name"),
            ("case", "business_email"), ("delivery", "recipient"))


def _sealed_storage(database: pw.Database, migrator: SchemaMigrator) -> None:
    """Personal data encrypted at rest (relay.core.sealing): the reviewer's blind index, text
    columns wide enough for sealed values, and every value sealed in place under the storage key,
    in this step's transaction (relay.store.key_check.settle)."""
    if "reviewer_digest" not in {column.name for column in database.get_columns("review")}:
        run(migrator.add_column("review", "reviewer_digest", pw.CharField(max_length=64, null=True)))
    if "review_reviewer_digest" not in {index.name for index in database.get_indexes("review")}:
        run(migrator.add_index("review", ("reviewer_digest",), False))
    if isinstance(database, pw.PostgresqlDatabase):
        types = {(table, column.name): column.data_type for table in {t for t, _ in _WIDENED}
                 for column in database.get_columns(table)}
        run(*[migrator.alter_column_type(table, column, pw.TextField()) for table, column in _WIDENED
              if types.get((table, column)) != "text"])
    _body_table(database, migrator)  # sealing knows the bodies only where version 9 keeps them
    key_check.settle(database)


def _body_table(database: pw.Database, migrator: SchemaMigrator) -> None:
    """The outbox's bodies move to a table of their own (`delivery_body`): SQLite writes a whole
    row anew on every update, and each claim and each result rewrote the body with it. They move
    as they are: a body stays bound to its delivery's Message-ID (relay.store.sealed_columns)."""
    database.create_tables([DeliveryBody], safe=True)
    if "body" not in {column.name for column in database.get_columns("delivery")}:
        return
    sql: Any = database.execute_sql  # peewee's execute_sql has no type annotations
    sql('INSERT INTO "delivery_body" ("delivery_id", "message_id", "created_at", "body") '
        'SELECT "id", "message_id", "created_at", "body" FROM "delivery" WHERE "body" IS NOT NULL')
    sql('DROP INDEX IF EXISTS "delivery_body_age"')
    sql('ALTER TABLE "delivery" DROP COLUMN "body"')


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "index a case's events by time", _event_timeline_index),
    Migration(3, "count refusals per outcome and minute", _refusal_counts),
    Migration(4, "keep the business's address per case", _business_email_per_case),
    Migration(5, "API keys and idempotent responses", _api_tables),
    Migration(6, "the webhook outbox", _webhooks),
    Migration(7, "decline links: a random value per case, the time it was declined", _decline_links),
    Migration(8, "personal data sealed under the storage key, reviewers found by a blind index", _sealed_storage),
    Migration(9, "the outbox's message bodies in a table of their own", _body_table),
)
CURRENT = MIGRATIONS[-1].version if MIGRATIONS else 1


def version(database: pw.Database) -> int | None:
    """The database's schema version; None when it has no tables yet."""
    if not database.table_exists(Setting._meta.table_name):
        return None
    row = Setting.get_or_none(Setting.name == VERSION_KEY)
    return int(row.value) if row is not None else 1


def migrate(database: pw.Database) -> list[int]:
    """Bring `database` to this code's schema; the versions migrated to (none for a database that
    was just created, or already up to date)."""
    with _turn(database):
        found = version(database)
        if found is None:
            with database.atomic():
                database.create_tables(MODELS, safe=True)
                _set_version(CURRENT)
                key_check.settle(database)
            return []
        if found > CURRENT:
            raise SchemaTooNew(f"the database has schema version {found}, this relay knows up to {CURRENT}: "
                               "run the newer relay, or restore a backup made for this one")
        done = []
        migrator = SchemaMigrator.from_database(database)
        for step in MIGRATIONS:
            with database.atomic():
                if (version(database) or 0) >= step.version:
                    continue  # done meanwhile by another process
                step.apply(database, migrator)
                _set_version(step.version)
            done.append(step)
        key_check.settle(database)  # a database kept in the clear (`[storage] key = "off"`) is sealed now
    for step in done:  # once committed (on SQLite the turn's transaction commits the steps)
        logs.event(Event.STORAGE_MIGRATED, f"database schema migrated to version {step.version}: "
                   f"{step.description}", version=step.version)
    return [step.version for step in done]


def _set_version(number: int) -> None:
    Setting.insert(name=VERSION_KEY, value=str(number)).on_conflict(
        conflict_target=[Setting.name], update={Setting.value: str(number)}).execute()


class _turn:
    """Hold the migration lock: a PostgreSQL advisory lock (released however the block ends); on
    SQLite, which has no such lock, one IMMEDIATE transaction around every step. A write lock
    taken per step let a second process slip in between two steps and run the later ones itself.
    A step that fails there rolls back the steps before it as well; the next start runs them all."""

    def __init__(self, database: pw.Database) -> None:
        self.database: Any = database  # peewee's execute_sql has no type annotations
        self.postgres = isinstance(database, pw.PostgresqlDatabase)
        self.transaction: Any = None

    def __enter__(self) -> None:
        if self.postgres:
            self.database.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK,))
        else:
            self.transaction = self.database.atomic()
            self.transaction.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.postgres:
            self.database.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK,))
        else:
            self.transaction.__exit__(*exc)
