"""Sealing what is stored, table by table in batches: the first sealing of a database written in
the clear (the migration to schema version 8, or a database kept with `[storage] key = "off"`),
and the re-sealing of a key rotation.

Rows are visited in primary-key order, a batch per transaction, and each row is written back
only if its value is still the one read (a running relay may have changed it meanwhile), so the
relay keeps working while a rotation runs. Where a rotation has got to is stored with it
(relay.store.vault.Rotation), so a rotation killed half-way goes on from its last batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import peewee as pw

from relay.core import sealing
from relay.core.sealing import Keyring, Place
from relay.store import vault
from relay.store.models import Review, Setting, db
from relay.store.sealed_columns import TABLES, SealedTable

BATCH = 500
Progress = Callable[[str, int], None]  # (table, rows re-sealed so far in it)


def _batches(table: SealedTable, after: int, batch: int, columns: list[Any]) -> Iterator[list[dict[str, Any]]]:
    """The table's rows after primary key `after`, in key order, `batch` at a time."""
    model: Any = table.model
    pk: Any = model._meta.primary_key
    fields = [getattr(model, table.row_key).alias("_row"), *columns]
    if not isinstance(pk, pw.AutoField):  # `setting`: few rows, one batch
        query = model.select(pk.alias("_pk"), *fields)
        yield list(query.where(pk.in_(table.only)).dicts() if table.only else query.dicts())
        return
    while True:
        found = list(model.select(pk.alias("_pk"), *fields).where(pk > after).order_by(pk).limit(batch).dicts())
        if not found:
            return
        yield found
        after = found[-1]["_pk"]


def seal_all(ring: Keyring, progress: Progress | None = None) -> int:
    """Seal every value of a database written in the clear, and index its reviewers under
    `ring`'s key. Run inside one transaction (a migration's): a crash leaves it all in the clear."""
    done = 0
    for table in TABLES:
        columns = [getattr(table.model, c) for c in table.columns]
        for rows in _batches(table, 0, BATCH, columns):
            for row in rows:
                values = {c: _sealed(ring, table, c, row["_row"], row[c]) for c in table.columns if row[c] is not None}
                if table.model is Review:
                    email = row["reviewer_email"]
                    values["reviewer_digest"] = ring.digest(email) if email is not None else None
                if values:
                    table.model.update(values).where(table.model._meta.primary_key == row["_pk"]).execute()
                    done += 1
            if progress:
                progress(table.name, done)
    return done


def _sealed(ring: Keyring, table: SealedTable, column: str, row: object, value: Any) -> Any:
    where = Place(table.name, column, str(row))
    return ring.seal_bytes(where, bytes(value)) if column in table.binary else ring.seal_text(where, value)


def _head(table: SealedTable, column: str) -> Any:
    """The first characters of a sealed value, which name its key: read instead of the value."""
    size = sealing.BINARY_HEAD if column in table.binary else sealing.TEXT_HEAD
    return pw.fn.SUBSTR(getattr(table.model, column), 1, size).alias(column)


def _key_of(table: SealedTable, column: str, head: Any) -> str | None:
    if head is None:
        return None
    return sealing.binary_id(bytes(head) + b"\0") if column in table.binary else sealing.text_id(str(head) + "\0")


def rotate_batch(ring: Keyring, target: str, table: SealedTable, rows: list[dict[str, Any]]) -> int:
    """Re-seal under `target` what `rows` (primary keys and heads) show under another key; the
    rows written back (a row changed by someone else since it was read is left for the next pass)."""
    model: Any = table.model
    pk: Any = model._meta.primary_key
    done = 0
    for row in rows:
        stale = [c for c in table.columns if _key_of(table, c, row[c]) not in (None, target)]
        if not stale:
            continue
        current = model.select(*[getattr(model, c) for c in stale]).where(pk == row["_pk"]).dicts().first()
        if current is None:
            continue
        values: dict[str, Any] = {}
        same: Any = pw.Value(True)
        for column in stale:
            old = current[column]
            if old is None:
                continue
            where = Place(table.name, column, str(row["_row"]))
            if column in table.binary:
                values[column] = ring.seal_bytes(where, ring.open_bytes(where, bytes(old)))
            else:
                plain = ring.open_text(where, old)
                values[column] = ring.seal_text(where, plain)
                if model is Review and column == "reviewer_email":
                    values["reviewer_digest"] = ring.digest(plain)
            same = same & (getattr(model, column) == old)
        if values and model.update(values).where((pk == row["_pk"]) & same).execute():
            done += 1
    return done


def rotate(ring: Keyring, state: vault.Rotation, batch: int = BATCH, progress: Progress | None = None,
           max_passes: int = 5) -> vault.Rotation:
    """Re-seal every value under `ring`'s current key (the rotation's target), a batch per
    transaction, storing how far it got after each; passes repeat until one finds nothing left
    under another key (a relay that had not seen the rotation yet may have sealed one behind it)."""
    target = state.to
    while True:
        found = 0
        for index in range(state.table, len(TABLES)):
            table = TABLES[index]
            heads = [_head(table, c) for c in table.columns]
            for rows in _batches(table, state.after if index == state.table else 0, batch, heads):
                with db.atomic():
                    count = rotate_batch(ring, target, table, rows)
                    state = dataclasses.replace(state, table=index, after=int(rows[-1]["_pk"]) if _numeric(table)
                                                else 0)
                    store_state(state)
                found += count
                if progress and count:
                    progress(table.name, count)
            state = dataclasses.replace(state, table=index + 1, after=0)
        state = dataclasses.replace(state, table=0, after=0, passes=state.passes + 1)
        with db.atomic():
            store_state(state)
        if not found:
            return state
        if state.passes >= max_passes:
            raise vault.KeyRotated(f"after {state.passes} passes values under the old key keep appearing: "
                                   "a relay that does not see the rotation is still writing; restart it")


def _numeric(table: SealedTable) -> bool:
    return isinstance(table.model._meta.primary_key, pw.AutoField)


def store_state(state: vault.Rotation) -> None:
    Setting.insert(name=vault.ROTATION, value=state.as_json()).on_conflict(
        conflict_target=[Setting.name], update={Setting.value: state.as_json()}).execute()


def announce(state: vault.Rotation) -> None:
    """Put a rotation's state (the new key, sealed under the old) where every relay looks."""
    with db.atomic():
        store_state(state)
