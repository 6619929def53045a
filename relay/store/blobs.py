"""Large blobs written where they lie, on SQLite.

Binding a 25 MB value to an INSERT costs SQLite two more copies of it at once: the driver's copy
of the bound value and the record SQLite assembles from the row. A row inserted with
`zeroblob(size)` in place of the value and then written through SQLite's incremental blob I/O
(`sqlite3.Connection.blobopen`) costs neither, provided the blob is the last column of its table
(a zeroblob anywhere else is spelled out in full when the record is built), as
`DeliveryBody.body` is. Reading one back through a SELECT costs three copies at once as well;
`read` fills one buffer a megabyte at a time. PostgreSQL takes the value bound as it is and
returns it as the driver reads it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import peewee as pw

from relay.store.models import db

IN_PLACE_FROM = 256 * 1024  # smaller values are cheaper bound in the one INSERT
_CHUNK = 1024 * 1024


def in_place(size: int) -> bool:
    """Whether a value of `size` bytes is written through `write` rather than bound."""
    return size >= IN_PLACE_FROM and isinstance(db.obj, pw.SqliteDatabase)


def selected(column: pw.Field) -> Any:
    """What a SELECT reads of `column`: the value, or on SQLite, for a value too large to read
    whole, NULL and its length as `<name>_length` (then `read` it)."""
    if not isinstance(db.obj, pw.SqliteDatabase):
        return [column]
    length = pw.fn.length(column)
    return [pw.Case(None, [(length < IN_PLACE_FROM, column)], None).alias(column.name),
            length.alias(f"{column.name}_length")]


def read(table: str, column: str, row_id: int) -> bytearray:
    """The value of row `row_id`, a megabyte at a time into one buffer of its size (a SELECT
    holds it three times over at once)."""
    connection: sqlite3.Connection = db.connection()
    with connection.blobopen(table, column, row_id, readonly=True) as blob:
        value = bytearray(len(blob))
        view = memoryview(value)
        for start in range(0, len(value), _CHUNK):
            view[start:start + _CHUNK] = blob.read(_CHUNK)
    return value


def write(table: str, column: str, row_id: int, value: bytes | bytearray) -> None:
    """Fill the `zeroblob` of row `row_id` with `value`, a megabyte at a time (inside the
    transaction that inserted the row)."""
    connection: sqlite3.Connection = db.connection()
    view = memoryview(value)
    with connection.blobopen(table, column, row_id) as blob:
        if len(blob) != len(view):
            raise ValueError(f"{table}.{column} of row {row_id} holds {len(blob)} bytes, not {len(view)}")
        for start in range(0, len(view), _CHUNK):
            blob.write(view[start:start + _CHUNK])
