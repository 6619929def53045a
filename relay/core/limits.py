"""Shape limits on raw messages and per-client probe counting (pure, or in-memory per process).

The header block and the lines are measured on the raw bytes before anything is parsed, so a
message built to make the parser work hard is refused cheaply. Bare LF line endings count as line
ends, as in real mail.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from relay.core.outcomes import Outcome

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"(?:^|\n)[^ \t\r\n]")


@dataclass(frozen=True)
class Shape:
    max_line_bytes: int
    max_header_count: int
    max_header_bytes: int


def check_shape(raw: bytes, shape: Shape) -> Outcome | None:
    """LINE_TOO_LONG or HEADER_TOO_LARGE, or None when the message is within the limits."""
    end = _HEADER_END.search(raw)
    header = raw[: end.start()] if end else raw
    if len(header) > shape.max_header_bytes:
        return Outcome.HEADER_TOO_LARGE
    if len(_FIELD_START.findall(header)) > shape.max_header_count:
        return Outcome.HEADER_TOO_LARGE
    start = 0
    while start < len(raw):
        stop = raw.find(b"\n", start)
        stop = len(raw) if stop < 0 else stop
        if stop - start > shape.max_line_bytes:
            return Outcome.LINE_TOO_LONG
        start = stop + 1
    return None


@dataclass
class ProbeCounter:
    """Unknown recipients per client address within a window: past the limit the client is
    harvesting addresses, and its sessions are closed."""

    limit: int
    window: timedelta = timedelta(hours=1)
    seen: dict[str, deque[datetime]] = field(default_factory=dict)

    def add(self, client: str, now: datetime) -> bool:
        """Count one probe; True once the client is over the limit."""
        times = self.seen.setdefault(client, deque())
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        if len(self.seen) > 100_000:  # bounded memory under a flood of clients
            self.seen = {client: times}
        return len(times) > self.limit

    def blocked(self, client: str, now: datetime) -> bool:
        times = self.seen.get(client) or deque()
        return sum(1 for t in times if t >= now - self.window) > self.limit
