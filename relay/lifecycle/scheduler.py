"""Scheduler jobs: one pass of everything that is due, for `relay run-jobs` and the loop in
`relay serve` (driven by the `schedule` package). Each job is safe to run in several processes at
once: the database claims decide who does a piece of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import schedule

from relay import logs
from relay.app import App
from relay.core.redact import describe
from relay.core.vocabulary import Event
from relay.lifecycle import jobs as lifecycle
from relay.outbound.worker import Worker


async def run_once(app: App, worker: Worker) -> dict[str, dict[str, int]]:
    """One pass of every job; returns counts per job for the caller to print or log."""
    cases = await asyncio.to_thread(lifecycle.run_all, app)
    delivered = await worker.run_pass()
    return {"cases": cases,
            "outbox": {"sent": delivered.sent, "deferred": delivered.deferred, "failed": delivered.failed}}


async def run_scheduler(app: App, stop: asyncio.Event,
                        job: Callable[[], Awaitable[dict[str, dict[str, int]]]]) -> None:
    """Run `job` every `[scheduler] interval` until `stop` is set (the `schedule` package decides
    when a run is due; this loop only asks it once a second)."""
    scheduler = schedule.Scheduler()
    due: list[bool] = []
    seconds = max(1, int(app.settings.scheduler.interval.total_seconds()))
    scheduler.every(seconds).seconds.do(lambda: due.append(True))
    while not stop.is_set():
        scheduler.run_pending()
        if due:
            due.clear()
            try:
                counts = await job()
                if any(any(v.values()) for v in counts.values()):
                    logs.event(Event.JOBS_PASS, "scheduler pass", counts=counts)
            except Exception as exc:  # a failed pass is retried at the next interval
                logs.event(Event.JOBS_ERROR, f"scheduler pass failed: {describe(exc)}",
                           level=logging.ERROR)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
