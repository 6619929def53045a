"""Which columns are sealed, what names their rows, and sealing and opening them.

Each sealed value is bound to its table, column and row (relay.core.sealing). A row is named by a
key the relay writes with it and never changes: the external id of a business or review, the
Message-ID of a delivery, the queue id of a message, the setting's name, the case's id. The names
must be known before the row is written (the case's id is not: a case is written, then sealed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee as pw

from relay.core import sealing
from relay.core.errors import Unavailable
from relay.core.sealing import Place
from relay.store import vault
from relay.store.models import Business, Case, Delivery, DeliveryBody, Message, Review, Setting


class SealedValueRefused(Unavailable):
    """A stored value that does not open where it is: changed, or moved from another row or column."""


@dataclass(frozen=True)
class SealedTable:
    model: type[pw.Model]
    row_key: str                    # the column that names the row in the associated data
    columns: tuple[str, ...]        # the sealed ones
    binary: frozenset[str] = frozenset()
    only: tuple[str, ...] = ()      # for `setting`: the rows that are sealed (the others are not personal)
    bound_to: str | None = None     # the table named in the associated data, when not this one

    @property
    def name(self) -> str:
        """The table named in the associated data of the values."""
        return self.bound_to or self.stored_in

    @property
    def stored_in(self) -> str:
        return str(self.model._meta.table_name)


SECRET_ROW = "secret"  # noqa: S105  (the row's name) the instance's signing secret (relay.store.database.instance_key)

TABLES: tuple[SealedTable, ...] = (
    SealedTable(Setting, "name", ("value",), only=(SECRET_ROW,)),
    SealedTable(Business, "external_id", ("email",)),
    SealedTable(Review, "external_id", ("reviewer_email", "reviewer_name")),
    SealedTable(Case, "id", ("business_email", "message", "close_reason")),
    SealedTable(Message, "queue_id", ("original_message_id",)),
    SealedTable(Delivery, "message_id", ("recipient", "last_error")),
    # a body is bound to its delivery (`delivery.body` of that Message-ID), as it was when it was
    # a column of the delivery's row (schema version 9 moved it to a table of its own); it is
    # opened with the Message-ID of the delivery that claims it, so a body moved to another
    # delivery's row does not open
    SealedTable(DeliveryBody, "message_id", ("body",), binary=frozenset({"body"}), bound_to="delivery"),
)
_BY_MODEL = {table.model: table for table in TABLES}


def place(model: type[pw.Model], column: str, row: object) -> Place:
    table = _BY_MODEL[model]
    if column not in table.columns:
        raise KeyError(f"{table.name}.{column} is not a sealed column")
    return Place(table.name, column, str(row))


def seal(model: type[pw.Model], column: str, row: object, value: str | None) -> str | None:
    """`value` sealed for its place (None stays None: a forgotten address is no value)."""
    return None if value is None else vault.for_sealing().seal_text(place(model, column, row), value)


def seal_bytes(model: type[pw.Model], column: str, row: object,
               value: bytes | bytearray | None) -> bytes | bytearray | None:
    return None if value is None else vault.for_sealing().seal_bytes(place(model, column, row), value)


def open_text(model: type[pw.Model], column: str, row: object, value: str | None) -> str | None:
    if value is None:
        return None
    where = place(model, column, row)
    return str(_opened(lambda ring: ring.open_text(where, value)))


def open_bytes(model: type[pw.Model], column: str, row: object,
               value: bytes | bytearray | memoryview | None) -> bytes | bytearray | None:
    """The plain value; the stored one is read where it lies (a driver's memoryview is not copied)."""
    if value is None:
        return None
    where = place(model, column, row)
    opened: bytes | bytearray | memoryview = _opened(lambda ring: ring.open_bytes(where, value))
    return bytes(opened) if isinstance(opened, memoryview) else opened  # unsealed, as the driver gave it


def _opened(how: Any) -> Any:
    """Open with the process's keyring; a value under a key it does not know yet (a rotation begun
    elsewhere) makes it look at the database once more before giving up."""
    try:
        try:
            return how(vault.ring())
        except sealing.UnknownKey:
            return how(vault.refresh(force=True))
    except sealing.UnknownKey as exc:
        raise vault.KeyRotated(f"{exc}: restart the relay with the database's [storage] key") from None
    except sealing.Tampered as exc:
        raise SealedValueRefused(str(exc)) from None


def open_row(model: type[pw.Model], row: dict[str, Any], row_key: object) -> None:
    """Open, in place, the sealed columns of `row` that it holds."""
    table = _BY_MODEL[model]
    for column in table.columns:
        if column in row:
            opener = open_bytes if column in table.binary else open_text
            row[column] = opener(model, column, row_key, row[column])


def digests(address: str) -> list[str]:
    """The blind index values that find `address` (under every key held: during a rotation rows
    are under the old or the new one)."""
    return vault.refresh().digests(address)


def digest(address: str) -> str:
    return vault.for_sealing().digest(address)
