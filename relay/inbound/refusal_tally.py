"""Counting the SMTP refusals of a running relay into the database, a batch at a time.

A refusal is noted in memory (the event loop only adds to a dict); the first note schedules a
write half a second later that adds everything noted by then (relay.store.refusal_counts). So the
counts reach `relay status` within a second, and a flood of refusals costs a few writes a second.
`close` writes what is left when the relay stops; a process killed with SIGKILL loses at most the
last half second of counts (never mail).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime

from relay import logs
from relay.app import App
from relay.core.vocabulary import Event
from relay.store import refusal_counts

DELAY = 0.5  # seconds between the first unwritten refusal and its write


class RefusalTally:
    def __init__(self, app: App) -> None:
        self.app = app
        self.pending: Counter[tuple[datetime, str]] = Counter()
        self.writing: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def note(self, outcome: str) -> None:
        self.pending[(refusal_counts.minute_of(self.app.clock.now()), outcome)] += 1
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(DELAY, self._start_write)

    def _start_write(self) -> None:
        self.timer = None
        if self.writing is None or self.writing.done():
            self.writing = asyncio.get_running_loop().create_task(self.write())
        else:  # a write is still running: try again after it
            self.timer = asyncio.get_running_loop().call_later(DELAY, self._start_write)

    async def write(self) -> None:
        batch, self.pending = self.pending, Counter()
        if not batch:
            return
        try:
            await self.app.blocking(refusal_counts.add, dict(batch))
        except Exception as exc:  # counts are for monitoring: keep them for the next write
            self.pending.update(batch)
            logs.event(Event.STORAGE_ERROR, f"refusal counts not stored yet: {type(exc).__name__}",
                       level=logging.WARNING)

    async def close(self) -> None:
        """Write what is left (when the relay stops)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.writing is not None:
            await asyncio.gather(self.writing, return_exceptions=True)
        await self.write()
