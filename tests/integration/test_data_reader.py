"""The DATA reader (relay.inbound.data_reader) on a real asyncio stream: the message ends only at
CRLF `.` CRLF, dot-stuffed lines lose their dot, data over the limit and lines over the stream's
limit are read to the end and refused, and what follows the data is left for the next command."""

from __future__ import annotations

import asyncio

import pytest

from relay.core.outcomes import Outcome, reply
from relay.inbound import data_reader


def read(wire: bytes, max_bytes: int | None = None, limit: int = 1 << 16) -> tuple[data_reader.Received, bytes]:
    """What the reader makes of `wire` with lines of at most `limit` bytes (aiosmtpd's
    line_length_limit, which is also its stream's limit), and what it left in the stream."""
    async def run() -> tuple[data_reader.Received, bytes]:
        stream = asyncio.StreamReader(limit=limit)
        stream.feed_data(wire)
        stream.feed_eof()
        received = await data_reader.receive(stream, max_bytes, limit)
        return received, await stream.read()
    return asyncio.run(run())


def test_a_message_ends_at_its_dot_line_and_keeps_its_last_line_end() -> None:
    received, rest = read(b"Subject: x\r\n\r\nHallo\r\n.\r\nQUIT\r\n")
    assert received == data_reader.Received(b"Subject: x\r\n\r\nHallo\r\n", None)
    assert rest == b"QUIT\r\n"


def test_an_empty_message() -> None:
    assert read(b".\r\n")[0] == data_reader.Received(b"", None)


def test_dot_stuffed_lines_lose_their_first_dot() -> None:
    received, _ = read(b"..\r\n...dots\r\n.x\r\na.b\r\n\r\n..\r\n.\r\n")
    assert received.content == b".\r\n..dots\r\nx\r\na.b\r\n\r\n.\r\n"


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n"])
def test_sequences_other_than_crlf_dot_crlf_end_nothing(fake_end: bytes) -> None:
    wire = b"Subject: x\r\n\r\nbefore" + fake_end + b"MAIL FROM:<evil@example.org>\r\n.\r\n"
    received, rest = read(wire)
    assert received.problem is None and rest == b""
    assert b"MAIL FROM:<evil@example.org>" in received.content  # it is part of the message, not a command


def test_data_over_the_limit_is_read_to_its_end_and_refused() -> None:
    received, rest = read(b"a" * 50 + b"\r\n" + b"b" * 50 + b"\r\n.\r\nQUIT\r\n", max_bytes=60)
    assert received == data_reader.Received(b"", Outcome.TOO_LARGE) and rest == b"QUIT\r\n"
    assert str(reply(received.problem)).startswith("552 5.3.4 ")


def test_a_line_over_the_streams_limit_is_read_to_its_end_and_refused() -> None:
    # its tail, after the part the stream could not hold, begins with a dot: still the same line
    wire = b"ok\r\n" + b"x" * 300 + b".\r\nmore\r\n.\r\nQUIT\r\n"
    received, rest = read(wire, limit=100)
    assert received == data_reader.Received(b"", Outcome.LINE_TOO_LONG) and rest == b"QUIT\r\n"
    assert str(reply(received.problem)).startswith("552 5.3.4 ")  # the relay's words for aiosmtpd's 500


@pytest.mark.parametrize(("length", "refused"), [(98, False), (99, True), (100, True), (101, True)])
def test_a_line_is_measured_with_its_crlf_as_aiosmtpd_measures_it(length: int, refused: bool) -> None:
    # the stream lets a line through with up to `limit` bytes before its CRLF; the line with its
    # CRLF may not be longer than `limit`
    received, rest = read(b"x" * length + b"\r\n.\r\nNOOP\r\n", limit=100)
    assert received.problem is (Outcome.LINE_TOO_LONG if refused else None) and rest == b"NOOP\r\n"


def test_a_connection_that_ends_during_data_raises() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"Subject: x\r\n\r\nunfinished\r\n")


def test_a_large_message_comes_back_whole() -> None:
    lines = b"".join(b"%076d\r\n" % n for n in range(100_000)) + b"..tail\r\n"
    received, _ = read(lines + b".\r\n")
    assert received.content == lines.replace(b"..tail", b".tail")
