"""The bodies of the outbox's deliveries (`DeliveryBody`): sealed before they are written, written
once, read when a delivery is claimed.

A body is sealed bound to its delivery's Message-ID (`delivery.body`) and opened with the
Message-ID of the delivery that claims it: a body moved to another delivery's row does not open.
Large ones are written and read in place on SQLite (relay.store.blobs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw

from relay.store import blobs, sealed_columns
from relay.store.models import Delivery, DeliveryBody, rows
from relay.store.prepared import Prepared, insert_one

_TABLE = DeliveryBody._meta.table_name
_INSERT = insert_one(DeliveryBody, ("delivery", "message_id", "created_at", "body"), DeliveryBody.delivery)
_INSERT_ROOM = Prepared(lambda delivery, message_id, created_at, size: DeliveryBody.insert(
    {"delivery": delivery, "message_id": message_id, "created_at": created_at, "body": pw.fn.zeroblob(size)}
).returning(DeliveryBody.delivery))


@dataclass(frozen=True)
class Sealed:
    """A body sealed before it is enqueued: whoever holds the only reference to the plain one can
    let it go before the row is written (a 25 MB forward is then in memory once, sealed)."""

    data: bytes | bytearray
    size: int  # of the plain body


def seal(message_id: str, body: bytes) -> Sealed:
    """`body` sealed for the delivery with Message-ID `message_id`."""
    return Sealed(sealed_columns.seal_bytes(DeliveryBody, "body", message_id, body) or b"", len(body))


def store(delivery_id: int, message_id: str, created_at: datetime, body: Sealed) -> None:
    """Write a delivery's body (inside the transaction that wrote the delivery)."""
    if not blobs.in_place(len(body.data)):
        _INSERT.rows(delivery_id, message_id, created_at, body.data)
        return
    _INSERT_ROOM.rows(delivery_id, message_id, created_at, len(body.data))
    blobs.write(_TABLE, "body", delivery_id, body.data)  # the delivery's id is the row's id


def read(message_ids: dict[int, str]) -> dict[int, Any]:
    """The sealed bodies of deliveries {id: Message-ID}, by delivery id (a delivery whose body was
    purged has none)."""
    if not message_ids:
        return {}
    found = rows(DeliveryBody.select(DeliveryBody.delivery, *blobs.selected(DeliveryBody.body)).where(
        DeliveryBody.delivery.in_(list(message_ids))))
    bodies = {}
    for row in found:
        body = row["body"]
        if body is None and row.get("body_length") is not None:
            body = blobs.read(_TABLE, "body", row["delivery"])
        bodies[row["delivery"]] = body
    return bodies


def held() -> Any:
    """A condition on `Delivery`: the delivery still has its body."""
    return pw.fn.EXISTS(DeliveryBody.select(pw.SQL("1")).where(DeliveryBody.delivery == Delivery.id))


def opened(message_id: str, sealed: Any) -> bytes | bytearray:
    """A body opened for the delivery with Message-ID `message_id`; raises
    sealed_columns.SealedValueRefused where it does not open there."""
    return sealed_columns.open_bytes(DeliveryBody, "body", message_id, sealed) or b""
