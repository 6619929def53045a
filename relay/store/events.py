"""Case events, and the log lines that tell of them, written with their transaction.

An event is a row stored with its case (the case's timeline) and usually a log line. The row is
part of the transaction that made the change; the line is held back until that transaction has
committed for good, and dropped if it rolls back, so the log never describes work that did not
happen. Nested transactions are savepoints: a failed one drops only its own lines. Under group
commit (relay.store.group_commit) the outermost transaction is the group's, and the executor
flushes or drops the lines of each job with its commit.

`transaction()` is how code outside the store groups several store calls into one transaction;
nothing outside the store opens one on the database itself.

A case event that the platform hears about also writes its webhook here, in the same transaction
(relay.store.webhook_queue; which events are webhooks is relay.core.webhooks's table): recording
the event is the one place a webhook is made, so none is missed and none outlives a rollback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay import logs
from relay.core.vocabulary import Event
from relay.core.webhooks import NO_FACTS, Facts
from relay.store import webhook_queue
from relay.store.models import Event as EventRow
from relay.store.models import db
from relay.store.prepared import insert_one

_INSERT = insert_one(EventRow, ("case", "name", "at", "detail"), EventRow.id)


@dataclass(frozen=True)
class _Line:
    event: Event
    message: str
    level: int
    fields: dict[str, Any] = field(default_factory=dict)


class _Pending(threading.local):
    def __init__(self) -> None:
        self.lines: list[_Line] = []


_pending = _Pending()


def mark() -> int:
    """Where the held-back lines stand now (to drop what comes after, if that work fails)."""
    return len(_pending.lines)


def drop_since(position: int) -> None:
    del _pending.lines[position:]


def flush() -> None:
    """Write the held-back lines: their transaction has committed."""
    lines, _pending.lines = _pending.lines, []
    for line in lines:
        logs.event(line.event, line.message, level=line.level, **line.fields)


@contextmanager
def transaction() -> Iterator[None]:
    """One transaction (a savepoint inside another); its lines are written after the outermost
    commit, or dropped with a rollback."""
    position = mark()
    try:
        with db.atomic():
            yield
    except BaseException:
        drop_since(position)
        raise
    if db.transaction_depth() == 0:
        flush()


def log(event: Event, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """A log line about work in the current transaction, written once it has committed (at once
    outside a transaction)."""
    _pending.lines.append(_Line(event, message, level, fields))
    if db.transaction_depth() == 0:
        flush()


def _insert(case_id: int | None, event: Event, at: datetime, detail: str) -> int:
    return int(_INSERT.rows(case_id, event.value, at, detail)[0]["id"])


def record(case_id: int | None, event: Event, at: datetime, detail: str = "", *, message: str | None = None,
           level: int = logging.INFO, facts: Facts = NO_FACTS, **fields: Any) -> None:
    """Store an event with its case and its webhook, if it makes one (`facts`: what it adds to the
    webhook's data); with `message`, log it after the commit."""
    event_id = _insert(case_id, event, at, detail)
    if case_id is not None and webhook_queue.enabled():
        webhook_queue.add([webhook_queue.Recorded(event_id, case_id, event.value, at, facts)])
    if message is not None:
        log(event, message, level=level, case=case_id, **fields)


def record_many(case_ids: list[int], event: Event, at: datetime, detail: str = "",
                message: str | None = None, facts: Facts = NO_FACTS) -> None:
    """The same event for several cases (a prepared insert each: see relay.store.prepared), their
    webhooks with one read of the cases."""
    recorded = [webhook_queue.Recorded(_insert(case_id, event, at, detail), case_id, event.value, at, facts)
                for case_id in case_ids]
    if webhook_queue.enabled():
        webhook_queue.add(recorded)
    if message is not None:
        for case_id in case_ids:
            log(event, message, case=case_id)
