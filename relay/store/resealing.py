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
    if not _numeric(table):  # `setting`: few rows, one batch
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
                progress(table.stored_in, done)
    return done


def _sealed(ring: Keyring, table: SealedTable, column: str, row: object, value: Any) -> Any:
    where = Place(table.name, column, str(row))
    return ring.seal_bytes(where, bytes(value)) if column in table.binary else ring.seal_text(where, value)


def _head(table: SealedTable, column: str) -> Any:
    """The first characters of a sealed value, which name its key: read instead of the value."""
    size = sealing.BINARY_HEAD if column in table.binary else sealing.TEXT_HEAD
    return pw.fn.SUBSTR(getattr(table.model, column), 1, size).alias(column)


CLEAR = "clear"  # what `_key_of` says of a value without an envelope


def _key_of(table: SealedTable, column: str, head: Any) -> str | None:
    """The key id a value's head names; None for NULL, CLEAR for a value in the clear."""
    if head is None:
        return None
    name = sealing.binary_id(bytes(head) + b"\0") if column in table.binary else sealing.text_id(str(head) + "\0")
    return name or CLEAR


@dataclasses.dataclass
class Tally:
    """What a rotation found: values re-sealed, values seen under another key (re-sealed or not: a
    row changed meanwhile is seen again by the next pass), and what it could not touch."""

    resealed: int = 0
    stale: int = 0
    unopenable: list[str] = dataclasses.field(default_factory=list)
    clear: list[str] = dataclasses.field(default_factory=list)


def rotate_batch(ring: Keyring, target: str, table: SealedTable, rows: list[dict[str, Any]], tally: Tally) -> None:
    """Re-seal under `target` what `rows` (primary keys and heads) show under another key. A row is
    written back only if its values are still the ones read (compare and set); a value that does not
    open (changed, or moved from another place) or is in the clear is left as it is and reported."""
    model: Any = table.model
    pk: Any = model._meta.primary_key
    for row in rows:
        keys = {c: _key_of(table, c, row[c]) for c in table.columns}
        for column in [c for c, key in keys.items() if key == CLEAR]:
            tally.clear.append(f"{table.name}.{column} of row {row['_row']}")
        stale = [c for c, key in keys.items() if key not in (None, CLEAR, target)]
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
            try:
                if column in table.binary:
                    values[column] = ring.seal_bytes(where, ring.open_bytes(where, bytes(old)))
                else:
                    plain = ring.open_text(where, old)
                    values[column] = ring.seal_text(where, plain)
                    if model is Review and column == "reviewer_email":
                        values["reviewer_digest"] = ring.digest(plain)
            except sealing.SealingError as exc:
                tally.unopenable.append(str(exc))
                continue
            same = same & (getattr(model, column) == old)
        if values:
            tally.stale += 1  # seen: re-sealed now, or (changed meanwhile) by the next pass
            if model.update(values).where((pk == row["_pk"]) & same).execute():
                tally.resealed += 1


def rotate(ring: Keyring, state: vault.Rotation, batch: int = BATCH, progress: Progress | None = None,
           max_passes: int = 5) -> tuple[vault.Rotation, Tally]:
    """Re-seal every value under `ring`'s current key (the rotation's target), a batch per
    transaction, storing how far it got after each. Passes repeat until a whole pass, from the first
    table's first row, sees nothing under another key: a pass resumed half-way proves nothing about
    the rows before its start, and a relay that had not seen the rotation yet may have sealed a
    value behind it."""
    target = state.to
    total = Tally()
    while True:
        whole, tally = state.table == 0 and state.after == 0, Tally()
        for index in range(state.table, len(TABLES)):
            table = TABLES[index]
            heads = [_head(table, c) for c in table.columns]
            for rows in _batches(table, state.after if index == state.table else 0, batch, heads):
                before = tally.resealed
                with db.atomic():
                    rotate_batch(ring, target, table, rows, tally)
                    state = dataclasses.replace(state, table=index, after=int(rows[-1]["_pk"]) if _numeric(table)
                                                else 0)
                    store_state(state)
                if progress and tally.resealed > before:
                    progress(table.stored_in, tally.resealed - before)
            state = dataclasses.replace(state, table=index + 1, after=0)
        state = dataclasses.replace(state, table=0, after=0, passes=state.passes + 1)
        with db.atomic():
            store_state(state)
        total.resealed += tally.resealed
        if whole and not tally.stale:
            total.unopenable, total.clear = tally.unopenable, tally.clear
            return state, total
        if state.passes >= max_passes:
            raise vault.KeyRotated(f"after {state.passes} passes values under the old key keep appearing: "
                                   "a relay that does not see the rotation is still writing; restart it")


def _numeric(table: SealedTable) -> bool:
    """Whether the table's rows are numbered (an id of its own, or its delivery's)."""
    pk = table.model._meta.primary_key
    own = isinstance(pk, pw.AutoField)
    return own or (isinstance(pk, pw.ForeignKeyField) and isinstance(pk.rel_field, pw.AutoField))


def store_state(state: vault.Rotation) -> None:
    """Where the rotation has got to (its own row: the wrapped key is written once, by `announce`)."""
    Setting.insert(name=vault.ROTATION, value=state.as_json()).on_conflict(
        conflict_target=[Setting.name], update={Setting.value: state.as_json()}).execute()


def announce(state: vault.Rotation, wrapped: str) -> vault.Rotation:
    """Put a rotation where every relay looks: the new key sealed under the old one, and where it
    has got to. Two rotations started at once: the first one written wins, and the rotation under
    way is returned (the caller compares its target)."""
    with db.atomic():
        Setting.insert(name=vault.ROTATION_KEY, value=wrapped).on_conflict_ignore().execute()
        Setting.insert(name=vault.ROTATION, value=state.as_json()).on_conflict_ignore().execute()
    under_way = vault.rotation()
    assert under_way is not None
    return under_way
