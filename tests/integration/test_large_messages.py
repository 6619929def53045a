"""Large messages a few at a time (`[limits] large_messages_at_once`), through the SMTP handler's
own hooks as aiosmtpd calls them, on SQLite and PostgreSQL: while the allowed number is being
processed, another large message waits for its turn, and gets `451 4.3.2` only after
`large_message_wait`; small messages never wait."""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import Session

from relay.inbound.smtp import InboundHandler, RelayEnvelope
from tests.helpers.environment import new_case
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
