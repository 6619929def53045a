"""The drain's rules on their own, with stand-in sessions on an event loop (the real server's
sessions are in test_signals.py): idle sessions are told at once, a message being stored is not
cut off at the drain timeout but gets the grace, a client still sending is cut off, what is left
after the grace is aborted, and a second signal ends every wait at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.inbound import sessions as sessions_module
from relay.inbound.sessions import Drained, Sessions


class Stand:
    """A session as the drain sees it; `told` records what the drain did to it, in order."""

    def __init__(self, registry: Sessions, command: str | None = None, processing: bool = False) -> None:
        self.registry, self.command, self.processing = registry, command, processing
        self.told: list[str] = []
        registry.add(self)

    def stop_after_command(self) -> None:
        self.told.append("stop")
        if self.command is None:
            self._closed("421")

    def cut_off(self) -> None:
        self._closed("421 cut off")

    def abort(self) -> None:
        self._closed("aborted")

    def finish(self) -> None:
        """The command's reply is out; a stopping relay then says 421 and closes."""
        self.command, self.processing = None, False
        self._closed("250, 421")

    def _closed(self, how: str) -> None:
        self.told.append(how)
        self.registry.discard(self)


def test_each_kind_of_session_ends_its_own_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "PROCESSING_GRACE", 0.5)

    async def scenario() -> tuple[Drained, list[Stand]]:
        registry = Sessions()
        idle, sending = Stand(registry), Stand(registry, "DATA")
        storing, stuck = Stand(registry, "DATA", processing=True), Stand(registry, "DATA", processing=True)
        quick = Stand(registry, "RCPT")
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, quick.finish)     # within the drain timeout
        loop.call_later(0.3, storing.finish)    # after the timeout, within the grace
        drained = await registry.drain(0.1)
        return drained, [idle, sending, storing, stuck, quick]

    drained, (idle, sending, storing, stuck, quick) = asyncio.run(scenario())
    assert idle.told == ["stop", "421"]
    assert quick.told == ["stop", "250, 421"]
    assert sending.told == ["stop", "421 cut off"]
    assert storing.told == ["stop", "250, 421"]  # never cut off while storing
    assert stuck.told == ["stop", "aborted"]     # still storing after the grace
    assert drained == Drained(idle=1, finished=2, cut_off=1, aborted=1)


def test_a_second_signal_ends_the_waits_at_once() -> None:
    async def scenario() -> tuple[Drained, float]:
        registry = Sessions()
        Stand(registry, "DATA")
        Stand(registry, "DATA", processing=True)
        hurry = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, hurry.set)
        started = time.monotonic()
        drained = await registry.drain(30, hurry)
        return drained, time.monotonic() - started

    drained, took = asyncio.run(scenario())
    assert took < 5
    assert drained == Drained(idle=0, finished=0, cut_off=1, aborted=1)


def test_a_session_that_arrives_while_stopping_is_told_at_once() -> None:
    async def scenario() -> list[str]:
        registry = Sessions()
        await registry.drain(1)
        late = Stand(registry)  # accepted just before the listening socket closed
        await asyncio.sleep(0)
        return late.told

    assert asyncio.run(scenario()) == ["stop", "421"]
