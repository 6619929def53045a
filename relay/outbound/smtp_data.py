"""One message to a smarthost over an open aiosmtplib connection, its body streamed.

aiosmtplib's `sendmail` makes four whole copies of a message on the way out (its length for SIZE,
its line ends, its dots, the end line): 100 MB for a 25 MB answer. Here MAIL and RCPT go through
aiosmtplib as before, and DATA is aiosmtplib's own command followed by the transfer written from
views into the message (relay.core.dot_stuffing), waiting for the socket to take each piece before
the next, so the transport never holds more than a few pieces either. The final reply is read the
way aiosmtplib reads every reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtplib

from relay.core import dot_stuffing

START_INPUT, COMPLETED = 354, 250


async def deliver(client: aiosmtplib.SMTP, sender: str, recipient: str,
                  body: bytes | bytearray) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT and DATA; the server's reply to the data. Raises what aiosmtplib raises for a
    refusal (SMTPSenderRefused, SMTPRecipientRefused, SMTPDataError) or a broken connection."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()  # a server without ESMTP, as sendmail falls back too
    options = [f"SIZE={dot_stuffing.size(body)}"] if client.supports_extension("size") else []
    await client.mail(sender, options=options)
    await client.rcpt(recipient)
    start = await client.execute_command(b"DATA")
    if start.code != START_INPUT:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol: Any = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    pieces = dot_stuffing.pieces(body)
    piece = next(pieces)
    for following in pieces:
        protocol.write(piece)
        try:  # the transport's buffer stays small (aiosmtplib's flow control), for a bounded wait
            await asyncio.wait_for(protocol._drain_helper(), client.timeout)
        except TimeoutError:
            raise aiosmtplib.SMTPTimeoutError("the smarthost stopped taking the message") from None
        piece = following
    protocol.write(piece)  # the end line: the reply is read at once, nothing may come in between
    response: aiosmtplib.SMTPResponse = await protocol.read_response(timeout=client.timeout)
    if response.code != COMPLETED:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response
