"""Large messages a few at a time (`[limits] large_messages_at_once`), through the SMTP handler's
own hooks as aiosmtpd calls them, on SQLite and PostgreSQL: while the allowed number is being
processed, another large message waits for its turn, and gets `451 4.3.2` only after
`large_message_wait`; small messages never wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosmtpd.smtp import Session

from relay.core.outcomes import Outcome
from relay.inbound import intake
from relay.inbound.smtp import InboundHandler, RelayEnvelope
from relay.store.models import Delivery
from tests.helpers import stored
from tests.helpers.environment import new_case
from tests.helpers.smtp import LineClient
from tests.helpers.waiting import log_text

REVIEWER = "max.mueller@example.de"


def answer(text: str, size: int) -> bytes:
    head = f"From: <{REVIEWER}>\r\nSubject: Re: Anfrage\r\n\r\n{text}\r\n".encode()
    return head + (b"Mehr Text zur Bestellung.\r\n" * (size // 27 + 1))[:size]


def test_large_messages_wait_their_turn(db_url: str, app_factory: Any) -> None:
    app = app_factory(db_url, limits={"large_message_bytes": 4096, "large_messages_at_once": 1,
                                      "large_message_wait": "1s"})
    opened = new_case(app)

    async def scenario() -> tuple[str, str, str]:
        handler = InboundHandler(app)

        async def send(text: str, size: int) -> str:
            session = Session(asyncio.get_running_loop())
            session.peer = ("127.0.0.1", 40000)
            envelope = RelayEnvelope()
            envelope.mail_from = REVIEWER
            assert (await handler.handle_RCPT(None, session, envelope, opened.reviewer_address, [])).startswith("250")
            envelope.original_content = answer(text, size)
            return str(await handler.handle_DATA(None, session, envelope))  # type: ignore[arg-type]

        try:
            await handler.large.acquire()  # one large message is being processed
            busy = await send("Antwort A", 8000)
            small = await send("Antwort B", 1000)
            asyncio.get_running_loop().call_later(0.3, handler.large.release)  # its turn comes
            waited = await send("Antwort C", 8000)
        finally:
            await handler.refusals.close()
            handler.auth.close()
        return busy, small, waited

    busy, small, waited = asyncio.run(scenario())
    assert busy.startswith("451 4.3.2") and "large messages" in busy
    assert small.startswith("250") and waited.startswith("250")
    assert "waited 1s for its turn" in log_text(app.settings.log.file, "for its turn")


def test_an_announced_large_message_waits_before_its_data(db_url: str, app_factory: Any, relay_factory: Any,
                                                          sink: Any) -> None:
    """Over real SMTP: a client that announces a large message (MAIL FROM ... SIZE=) gets its 354
    only when a turn is free, so waiting costs a connection, not the message in memory."""
    app = app_factory(db_url, outbound={"url": sink.url}, limits={
        "large_message_bytes": 4096, "large_messages_at_once": 1, "large_message_wait": "1s"})
    relay = relay_factory(app)
    opened = new_case(app)

    def client() -> LineClient:
        line = LineClient(relay.port)
        assert line.command("EHLO client.example")[0] == 250
        assert line.command(f"MAIL FROM:<{REVIEWER}> SIZE=8000")[0] == 250
        assert line.command(f"RCPT TO:<{opened.reviewer_address}>")[0] == 250
        return line

    first, second = client(), client()
    try:
        assert first.command("DATA")[0] == 354  # its turn: it sends slowly
        code, text = second.command("DATA")  # no turn within a second: told to come back, no data taken
        assert (code, text.split()[0]) == (451, "4.3.2"), text
        first.send(answer("Antwort A", 8000).replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        assert first.reply()[0] == 250
        assert second.command("RSET")[0] == 250  # the turn is free again: the retry goes through
        assert second.command(f"MAIL FROM:<{REVIEWER}> SIZE=8000")[0] == 250
        assert second.command(f"RCPT TO:<{opened.reviewer_address}>")[0] == 250
        assert second.command("DATA")[0] == 354
        second.send(answer("Antwort B", 8000) + b"\r\n.\r\n")
        assert second.reply()[0] == 250
    finally:
        first.close()
        second.close()
    assert len(sink.wait("service@shop.example", count=2, kind="forward")) == 2


def test_the_intake_lets_go_of_the_message_once_parsed(db_url: str, app_factory: Any) -> None:
    """A 25 MB answer is not kept beside its forward: the handler hands it over as
    `intake.Incoming`, and the intake drops the bytes after parsing (what it stored is intact)."""
    app = app_factory(db_url)
    opened = new_case(app)
    conversation = intake.lookup(app, opened.reviewer_address.split("@")[0])
    assert conversation is not None
    incoming = intake.Incoming(answer("Die Bestellnummer ist 4711.", 300_000))
    result = intake.process(app, conversation, REVIEWER, incoming)
    assert result.outcome is Outcome.ACCEPTED and incoming.size > 300_000
    with pytest.raises(RuntimeError, match="let go"):
        incoming.raw  # noqa: B018 (reading it is the test)
    forward = stored.body(Delivery.get(Delivery.queue_id == result.queue_id))
    assert b"Die Bestellnummer ist 4711." in forward and forward.count(b"Mehr Text zur Bestellung.") > 10_000
