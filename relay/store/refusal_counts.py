"""Refusal counts in the database: added per outcome and minute, read back for a window.

Counting happens in memory first (relay.inbound.refusal_tally) and is added here in one statement
per outcome: a client that probes hundreds of addresses costs a few upserts, not one write each.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import peewee as pw

from relay.store.models import RefusalCount, rows


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def add(counts: Mapping[tuple[datetime, str], int]) -> None:
    """Add `(minute, outcome) -> n` to the stored counts (several instances may add to one row)."""
    with RefusalCount._meta.database.atomic():
        for (minute, outcome), number in counts.items():
            RefusalCount.insert(minute=minute, outcome=outcome, count=number).on_conflict(
                conflict_target=[RefusalCount.minute, RefusalCount.outcome],
                update={RefusalCount.count: RefusalCount.count + pw.EXCLUDED.count}).execute()


def since(start: datetime) -> dict[str, int]:
    """Refusals per outcome from the minute `start` falls in until now."""
    query = (RefusalCount.select(RefusalCount.outcome, pw.fn.SUM(RefusalCount.count).alias("total"))
             .where(RefusalCount.minute >= minute_of(start)).group_by(RefusalCount.outcome))
    return {str(row["outcome"]): int(row["total"]) for row in rows(query) if row["total"]}


def purge(before: datetime) -> int:
    """Forget counts older than `before` (they are for monitoring, not history)."""
    return int(RefusalCount.delete().where(RefusalCount.minute < before).execute())
