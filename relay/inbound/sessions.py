"""The SMTP sessions of a running `relay serve`, and how they end when it stops (SIGTERM, SIGINT).

A stop must neither lose a message answered 250 nor wait for ever on a client. The caller closes
the listening socket first, so no new session begins; then `Sessions.drain`:

1. A session waiting for its client's next command is answered `421 4.3.2` and closed at once
   (RFC 5321 3.8: a server that must shut down answers 421 and closes). A transaction it had begun
   (MAIL, RCPT) was not taken; the sender's server tries again later.
2. A session carrying out a command finishes it first: a message in DATA is received, stored and
   answered 250 (or refused as at any other time), then 421 follows and the session is closed.
3. At `timeout` (`[inbound] drain_timeout`) a session still in a command that is not yet storing
   a message, in practice a client still sending its message or one that stopped sending, is
   answered 421 and closed: nothing of its message was taken.
4. A session storing a complete message is not cut off at `timeout`: the store is the relay's own,
   short work, and cutting it off could only make the sender send the message again. It has
   `PROCESSING_GRACE` more; whatever is left after that (and a told client that does not read)
   is closed without a word.

So a stop takes at most `timeout + PROCESSING_GRACE`, and a second SIGTERM ends the wait at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

PROCESSING_GRACE = 10.0  # seconds a message being stored may take beyond the drain timeout


class Session(Protocol):
    """What the drain needs of a session (relay.inbound.smtp.RelaySMTP)."""

    @property
    def command(self) -> str | None:
        """The command being carried out, or None between commands."""

    @property
    def processing(self) -> bool:
        """A complete message is being checked and stored (the relay's work, not the client's)."""

    def stop_after_command(self) -> None:
        """421 and close now when between commands, else right after the command's reply."""

    def cut_off(self) -> None:
        """421 and close now, in the middle of a command."""

    def abort(self) -> None:
        """Close the connection now, without a reply."""


@dataclass
class Drained:
    """How the sessions of a stopping relay ended, for the log."""

    idle: int = 0      # between commands at the stop: answered 421 and closed at once
    finished: int = 0  # in a command at the stop, finished it and were closed after its reply
    cut_off: int = 0   # still in a command at the drain timeout: answered 421
    aborted: int = 0   # still open after that: closed without a reply

    def __str__(self) -> str:
        return (f"SMTP sessions: {self.idle} closed between commands, {self.finished} finished their command, "
                f"{self.cut_off} cut off at the drain timeout, {self.aborted} closed without a reply")


class Sessions:
    """The live SMTP sessions of one server. A session adds itself when its connection is made and
    discards itself when the connection is lost."""

    def __init__(self) -> None:
        self.live: set[Session] = set()
        self.stopping = False
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, session: Session) -> None:
        if session in self.live:  # STARTTLS makes the connection a second time
            return
        self.live.add(session)
        self._empty.clear()
        if self.stopping:  # accepted just before the listening socket closed: greeted, then told
            asyncio.get_running_loop().call_soon(session.stop_after_command)

    def discard(self, session: Session) -> None:
        self.live.discard(session)
        if not self.live:
            self._empty.set()

    def census(self) -> tuple[int, int]:
        """(sessions, of them in a command)."""
        return len(self.live), sum(1 for s in self.live if s.command is not None)

    async def drain(self, timeout: float, hurry: asyncio.Event | None = None) -> Drained:
        """End every session as the module says; returns how they ended. `hurry` (a second
        signal) ends each wait at once."""
        hurry = hurry or asyncio.Event()
        self.stopping = True
        sessions = list(self.live)
        busy = {s for s in sessions if s.command is not None}
        drained = Drained(idle=len(sessions) - len(busy))
        for session in sessions:
            session.stop_after_command()
        unfinished: set[Session] = set()
        if not await self._settled(timeout, hurry):
            for session in list(self.live):
                if session.processing:
                    continue
                if session.command is not None:
                    session.cut_off()
                    drained.cut_off += 1
                else:  # told already, but its client does not read what it was told
                    session.abort()
                    drained.aborted += 1
                unfinished.add(session)
            if not await self._settled(PROCESSING_GRACE, hurry):
                left = list(self.live)
                for session in left:
                    session.abort()
                drained.aborted += len(left)
                unfinished.update(left)
            await asyncio.sleep(0)  # the connections' lost callbacks run
        drained.finished = len(busy - unfinished)
        return drained

    async def _settled(self, seconds: float, hurry: asyncio.Event) -> bool:
        """True once no session is left; False when `seconds` pass or `hurry` is set first."""
        if not self.live:
            return True
        waits = [asyncio.ensure_future(self._empty.wait()), asyncio.ensure_future(hurry.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not self.live
