"""Statements that run for every inbound message, with their SQL generated once per kind of database.

peewee builds the SQL text of a query anew each time it runs; for a join over four tables that
takes longer than SQLite takes to answer it. A `Prepared` query is built once with placeholders,
its SQL kept (per database kind: SQLite and PostgreSQL quote and mark parameters differently),
and later runs only bind new values. Values come back as peewee would return them: the fields
named in `convert` go through their `python_value` (SQLite hands back dates as text).

On PostgreSQL the statement is also prepared on the server, once per connection (`PREPARE`, then
`EXECUTE` with the values): the server otherwise parses and plans the text anew every time, which
took twice as long as running the look-up of a relay address. (Prepared statements belong to a
session: a connection pooler in transaction mode between the relay and PostgreSQL would lose
them; connect the relay to PostgreSQL directly or through a pooler in session mode.)
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from relay.store.models import db


def _slot(number: int) -> str:
    return f"\x00slot{number}\x00"


@dataclass
class Prepared:
    build: Callable[..., Any]  # placeholders (peewee values, one per parameter) -> a peewee SELECT
    convert: Mapping[str, pw.Field] = field(default_factory=dict)
    cache: dict[str, tuple[str, list[tuple[bool, Any]]]] = field(default_factory=dict)

    def _compiled(self, count: int) -> tuple[str, list[tuple[bool, Any]]]:
        kind = type(db.obj).__name__
        known = self.cache.get(kind)
        if known is None:
            slots = [_slot(n) for n in range(count)]
            # converter=False: the placeholder goes into the parameters as it is, not through a
            # field's conversion (values are bound the way the driver takes them, as peewee does)
            sql, params = self.build(*(pw.Value(s, converter=False) for s in slots)).sql()
            # each parameter: (True, index of the value to bind) or (False, a constant of the query)
            template = [(True, slots.index(p)) if isinstance(p, str) and p in slots else (False, p) for p in params]
            if sorted(i for bound, i in template if bound) != list(range(count)):
                raise ValueError("every value of a prepared query must appear once as a parameter")
            known = self.cache[kind] = (sql, template)
        return known

    def rows(self, *values: Any) -> list[dict[str, Any]]:
        """The rows the statement returns (a SELECT, or a write with RETURNING); [] for a write
        without."""
        sql, template = self._compiled(len(values))
        if isinstance(db.obj, pw.PostgresqlDatabase):
            sql = _on_server(sql)
        cursor = db.execute_sql(sql, [values[x] if bound else x for bound, x in template])
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in found:
            for name, column in self.convert.items():
                row[name] = column.python_value(row[name])  # type: ignore[no-untyped-call]
        return found

    def first(self, *values: Any) -> dict[str, Any] | None:
        found = self.rows(*values)
        return found[0] if found else None


# per thread (peewee's connections are per thread): the connection and what is prepared on it
_prepared = threading.local()


def _on_server(sql: str) -> str:
    """`EXECUTE` of `sql` prepared on this thread's PostgreSQL connection (prepared first if it is
    not yet: a new connection has nothing prepared). Takes the same parameters as `sql`."""
    connection = db.connection()
    known: tuple[weakref.ref[Any], set[str]] | None = getattr(_prepared, "known", None)
    if known is None or known[0]() is not connection:
        known = _prepared.known = (weakref.ref(connection), set())
    name, prepare, execute = _server_form(sql)
    if name not in known[1]:
        db.execute_sql(prepare)
        known[1].add(name)
    return execute


@functools.cache
def _server_form(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE statement, EXECUTE statement) for `sql`, worked out once per statement."""
    pieces = sql.split("%s")
    if any("%" in piece for piece in pieces):
        raise ValueError("a prepared statement's SQL may hold no other % than its placeholders")
    name = "relay_" + hashlib.sha256(sql.encode()).hexdigest()[:20]
    numbered = pieces[0] + "".join(f"${number}{piece}" for number, piece in enumerate(pieces[1:], start=1))
    values = f" ({', '.join(['%s'] * (len(pieces) - 1))})" if len(pieces) > 1 else ""
    return name, f"PREPARE {name} AS {numbered}", f"EXECUTE {name}{values}"


def insert_one(model: type[pw.Model], columns: tuple[str, ...], returning: pw.Field) -> Prepared:
    """A one-row INSERT of `columns` (values given in that order) that returns `returning`."""
    return Prepared(lambda *values: model.insert(dict(zip(columns, values, strict=True))).returning(returning))
