"""`relay webhooks [--json]`, `relay webhooks retry ID`, `relay webhooks enable`: the webhook outbox
for admins (ADR 18). Nothing here shows a body, the secret or the URL's credentials."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from relay import logs
from relay.admin import views
from relay.app import App
from relay.core import webhooks as rules
from relay.core.errors import Refused
from relay.core.vocabulary import Event, WebhookState
from relay.outbound.webhook_worker import WebhookWorker
from relay.store import webhook_queue as queue

COLUMNS = (("id", "id"), ("msg_id", "webhook-id"), ("case", "case"), ("type", "type"), ("state", "state"),
           ("attempts", "tries"), ("next_attempt_at", "next try (UTC)"), ("last_error", "last error"))


class WebhookFailure(Refused):
    """A webhook command that cannot do what it was asked."""


def summary(app: App) -> dict[str, Any]:
    """What `relay status` says about webhooks: on or off, the endpoint's stop, the backlog by
    state, the oldest pending one."""
    settings = app.settings.webhooks
    counts, _ = queue.census()
    stop = queue.stopped(settings.url) if settings.enabled else None
    return {"enabled": settings.enabled, "endpoint": rules.endpoint(settings.url) if settings.enabled else None,
            "stopped_since": stop.since if stop else None, "stopped_by": stop.detail if stop else None,
            "pending": counts.get(WebhookState.PENDING.value, 0), "sending": counts.get(WebhookState.SENDING.value, 0),
            "failed": counts.get(WebhookState.FAILED.value, 0), "oldest_pending": queue.oldest_pending()}


def run(app: App, args: argparse.Namespace) -> tuple[str, int]:
    """(what the command prints, its exit code)."""
    if args.action == "retry":
        return _retry(app, args.id)
    if args.action == "enable":
        return _enable(app), 0
    entries = queue.listing([WebhookState.PENDING, WebhookState.SENDING, WebhookState.FAILED])
    if args.json:
        return views.to_json({**summary(app), "webhooks": entries}), 0
    return "\n".join([views.webhooks_text(summary(app)),
                      views.table(entries, COLUMNS) if entries else "nothing pending or failed"]), 0


def _enable(app: App) -> str:
    settings = app.settings.webhooks
    was = queue.stopped(settings.url) if settings.enabled else None
    pending = queue.resume(app.clock.now())
    if was is None:
        return f"webhooks were not stopped; {pending} pending"
    logs.event(Event.WEBHOOK_ENABLED, f"webhooks to {rules.endpoint(settings.url)} enabled again by an admin "
               f"(stopped since {was.since:%Y-%m-%d %H:%M:%S}Z: {was.detail}); {pending} pending")
    return f"webhooks to {rules.endpoint(settings.url)} enabled again; {pending} pending, due now"


def _retry(app: App, reference: str) -> tuple[str, int]:
    """Make one webhook due now with a fresh `max_age`, and send it (unless a running relay's worker
    takes it first: then its outcome is the answer)."""
    found = queue.find(reference)
    if found is None or not queue.retry_now(found, app.clock.now()):
        raise WebhookFailure(f"webhook {reference} is not pending or failed")
    logs.event(Event.WEBHOOK_RETRY, f"webhook {reference} retried by an admin")
    worker = WebhookWorker.for_app(app)
    if worker is None:
        return f"webhook {reference}: pending ([webhooks] url is empty: nothing sends it)", 1
    if queue.stopped(worker.url) is not None:
        return f"webhook {reference}: pending (the endpoint is stopped after a 410: relay webhooks enable)", 1
    counts = asyncio.run(_once(worker, found))
    if counts.sent or counts.failed or counts.deferred or counts.stopped:
        state = "sent" if counts.sent else "failed" if counts.failed else \
            "stopped by 410 Gone" if counts.stopped else "deferred (see relay webhooks)"
    else:
        state = _settled(found)
    return f"webhook {reference}: {state}", 0 if state == "sent" else 1


async def _once(worker: WebhookWorker, webhook_id: int) -> Any:
    try:
        return await worker.run_pass(max_batches=1, only=webhook_id)
    finally:
        await worker.close()


def _settled(webhook_id: int, wait: float = 30.0) -> str:
    """The state another process's attempt left a webhook in (waiting at most `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        state = queue.state_of(webhook_id) or WebhookState.FAILED.value
        if state != WebhookState.SENDING or time.monotonic() > deadline:
            return state if state != WebhookState.PENDING else "deferred (see relay webhooks)"
        time.sleep(0.2)
