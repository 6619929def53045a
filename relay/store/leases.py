"""Claiming due rows of a queue under a lease: the one rule the mail outbox and the webhook outbox
share (ADR 2). Due are rows waiting whose time has come and rows being sent whose lease ran out
(their claimer died); each kind is one index range scan on (state, next_attempt_at), not one OR
over every row. On PostgreSQL the rows are locked with SKIP LOCKED, so claimers in several
instances take different rows instead of waiting for each other."""

from __future__ import annotations

from typing import Any

from relay.store.database import is_postgres


def due_ids(model: Any, waiting: Any, stale: Any, limit: int, only: int | None = None) -> list[int]:
    """Ids of at most `limit` due rows of `model` (only row `only`, where given), waiting ones
    first, oldest due first. Call inside the claim's transaction."""
    ids: list[int] = []
    for condition in (waiting, stale):
        wanted = condition & (model.id == only) if only is not None else condition
        query = model.select(model.id).where(wanted).order_by(model.next_attempt_at, model.id)
        query = query.limit(limit - len(ids))
        if is_postgres():
            query = query.for_update(skip_locked=True)
        ids += [row.id for row in query]
        if len(ids) >= limit:
            break
    return ids
