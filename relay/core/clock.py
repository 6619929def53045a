"""The one source of time. Everything that decides by time takes a Clock, so tests move time instead
of sleeping. The clock that reads the system's time is a shell's (relay.app.SystemClock): the core
never asks what time it is, it is told.

All times inside the relay and in its database are naive datetimes in UTC; only presentation
(notices, CLI) converts to a time zone. One convention avoids aware/naive mix-ups across SQLite
and PostgreSQL drivers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, naive UTC."""
        ...


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, 0)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment
